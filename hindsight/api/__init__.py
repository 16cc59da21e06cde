"""The HTTP API (aiohttp): status, backups and recoveries for operators and monitoring."""
