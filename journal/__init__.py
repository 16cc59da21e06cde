"""The append-only journal: Hindsight's vocabulary and its durable log.

Terms:
- *event*: one captured change (``ChangeEvent``): a document insert/update/delete, a file
  create/modify/move/delete, or a system marker, gap or checkpoint.
- *sequence number* (seq): the journal's gapless, strictly increasing number for an event.
- *position*: a source's own resume point (a change stream token), kept in each event.
- *frame*: a checksummed envelope; a journal frame holds one batch of events.
- *segment*: an append-only file of frames; *sealed* segments are immutable and their
  SHA-256 is recorded in the *manifest*.
- *blob*: a file's content, stored as content-defined chunks packed into *pack* files.
- *checkpoint*: a named consumer's last processed sequence number.

This package imports no other Hindsight package.
"""
