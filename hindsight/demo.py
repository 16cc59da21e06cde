"""A realistic chatbot application tree, generated deterministically from a seed.

Tests and benchmarks need the kind of directory the brief protects (section 2): a React and
TypeScript front end, Python scripts, n8n workflows, a Spanish knowledge base with product
prices, test scenarios, logs, a ``.env`` with keys, a ``node_modules`` tree that backups skip,
a few large binaries and some exact duplicates (copies of knowledge-base exports).
``make_tree`` writes one; ``mutate`` then changes about a given fraction of it, the way a day
of development would.

The same seed and arguments always give the same bytes. About 60% of ``total_bytes`` goes to
a handful of incompressible binaries (``assets/*.bin``, standing in for product images and
model files); the rest is many small text files. Every secret in the tree is fake.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

__all__ = ["LARGE_SHARE", "TreeStats", "make_tree", "mutate"]

LARGE_SHARE = 0.6
"""Fraction of ``total_bytes`` that goes to the large binaries."""
_LARGE_NAMES = (
    *("catalogo_imagenes", "modelo_embeddings", "video_demo", "fotos_productos"),
    *("audio_bienvenida", "banners_promocion", "indice_vectorial", "respaldo_medios"),
)
_PER_DIR = 200  # files per directory before a kind spreads into subdirectories
_MIB = 2**20
_POOL = 4096  # distinct sentences per generator; files draw from this pool
_APPENDABLE = (".log", ".py", ".ts", ".tsx", ".txt")

_VOCABULARY = """el la los las un una de del en con para por que se su al como más pero sus ya este
    cuando muy sin sobre también hasta hay donde desde todo durante cada precio producto
    envío pedido cotización cliente garantía pago tarjeta factura descuento inventario
    entrega devolución soporte horario tienda sucursal modelo color talla disponible
    promoción mayoreo asesor conversación mensaje catálogo stock meses intereses semana
    días hábiles costo total cambio compra venta oferta calidad atención respuesta consulta
    usuario sesión contexto servicio cobertura domicilio nacional internacional rastreo guía
    paquetería transferencia efectivo depósito crédito débito apartado reembolso política
    seguimiento cuenta registro confirmación válido vigente especial temporada nuevo
    original importado existencia almacén"""
_WORDS = tuple(_VOCABULARY.split())
_PRODUCTS = (
    *("Silla ergonómica", "Escritorio elevable", "Lámpara LED", "Audífonos inalámbricos"),
    *("Mochila ejecutiva", "Cafetera espresso", "Licuadora", "Ventilador de torre"),
    *("Teclado mecánico", "Monitor 27 pulgadas", "Bocina portátil", "Reloj inteligente"),
    *("Colchón matrimonial", "Sofá cama", "Refrigerador", "Horno de microondas"),
)
_VARIANTS = ("Pro", "Plus", "Mini", "Max", "Eco", "Premium", "Lite", "2024", "XL", "Basic")
_COLORS = ("negro", "blanco", "gris", "azul", "rojo", "verde", "beige", "café")
_CITIES = ("Ciudad de México", "Guadalajara", "Monterrey", "Puebla", "Querétaro", "Mérida")
_TOPICS = (
    *("ventas", "productos", "envios", "garantias", "pagos", "soporte"),
    *("horarios", "promociones", "devoluciones", "facturacion", "mayoreo", "sucursales"),
)
_QUESTIONS = (
    "¿Cuál es el precio de {p}?",
    "¿Tienen {p} disponible en color {c}?",
    "¿Hacen envíos de {p} a {city}?",
    "¿Cuánto tarda la entrega en {city}?",
    "¿Qué garantía tiene {p}?",
    "¿Puedo pagar {p} a meses sin intereses?",
    "¿Hay descuento por mayoreo en {p}?",
    "¿Dónde está la sucursal de {city}?",
)
_PASCAL = (
    *("Chat", "Product", "Quote", "Message", "Catalog", "Cart", "Order", "Session"),
    *("Admin", "Analytics", "Knowledge", "User"),
)
_WIDGETS = (
    *("Window", "Card", "Form", "List", "Panel", "Modal", "Header", "Footer"),
    *("Item", "Badge", "Table", "View"),
)
_LIBS = ("api", "mongo", "openai", "whatsapp", "session", "pricing", "catalog", "quote", "format")
_LIB_ROLES = ("Client", "Utils", "Types", "Service", "Helpers", "Store")
_VERBS = ("sync", "import", "export", "clean", "migrate", "check", "build", "load", "send")
_NOUNS = (
    *("catalogo", "kb", "precios", "conversaciones", "cotizaciones", "sesiones"),
    *("usuarios", "analytics", "embeddings", "inventario", "respuestas", "reportes"),
)
_SERVICES = ("app", "webhook", "n8n", "mongo", "openai", "errores")
_AREAS = ("chat", "catalogo", "cotizaciones", "admin", "analytics", "soporte", "ventas")


class TreeStats(NamedTuple):
    """What ``make_tree`` wrote: regular files and their total size in bytes."""

    files: int
    bytes: int


class _Out:
    """Writes files under a root, creating directories once, and counts what it wrote."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.files = 0
        self.bytes = 0
        self.paths: dict[str, list[str]] = {}  # kind -> relative paths written
        self._dirs: set[Path] = set()

    def write(self, rel: str, data: bytes, kind: str = "") -> None:
        """Write ``data`` to ``root/rel``."""
        path = self.root / rel
        if path.parent not in self._dirs:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._dirs.add(path.parent)
        path.write_bytes(data)
        self.files += 1
        self.bytes += len(data)
        self.paths.setdefault(kind, []).append(rel)


class _Gen:
    """Seeded content: sentences, knowledge-base entries, source files, logs."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.pool = [self._sentence() for _ in range(_POOL)]
        self.clock = datetime(2024, 3, 1, 8, 0, 0)

    def _sentence(self) -> str:
        words = self.rng.choices(_WORDS, k=self.rng.randint(6, 16))
        return " ".join(words).capitalize() + "."

    def sentence(self) -> str:
        """One sentence from the pool."""
        return self.rng.choice(self.pool)

    def paragraph(self, n: int) -> str:
        """``n`` sentences from the pool."""
        return " ".join(self.rng.choices(self.pool, k=n))

    def hex(self, n: int) -> str:
        """``n`` random hex digits."""
        return f"{self.rng.getrandbits(4 * n):0{n}x}"

    def product_name(self) -> str:
        """A product name such as 'Cafetera espresso Pro'."""
        return f"{self.rng.choice(_PRODUCTS)} {self.rng.choice(_VARIANTS)}"

    def question(self) -> str:
        """A customer question in Spanish."""
        template = self.rng.choice(_QUESTIONS)
        city = self.rng.choice(_CITIES)
        return template.format(p=self.product_name(), c=self.rng.choice(_COLORS), city=city)

    def qa(self, i: int) -> dict[str, Any]:
        """A question-and-answer knowledge-base entry."""
        return {
            "id": f"kb-{i:05d}",
            "categoria": self.rng.choice(_TOPICS),
            "pregunta": self.question(),
            "respuesta": self.paragraph(self.rng.randint(2, 4)),
            "palabras_clave": self.rng.sample(_WORDS, 3),
            "fuente": self.rng.choice(("manual", "whatsapp", "web", "n8n")),
        }

    def product(self, i: int) -> dict[str, Any]:
        """A product catalog entry with a price in MXN."""
        return {
            "sku": f"SKU-{self.rng.randrange(10**6):06d}",
            "nombre": self.product_name(),
            "precio": round(self.rng.uniform(99, 25_000), 2),
            "moneda": "MXN",
            "stock": self.rng.randrange(0, 500),
            "color": self.rng.choice(_COLORS),
            "descripcion": self.paragraph(2),
            "orden": i,
        }

    def timestamp(self) -> str:
        """A steadily advancing ISO timestamp, for logs and 'updated' fields."""
        self.clock += timedelta(milliseconds=self.rng.randrange(1, 5_000))
        return self.clock.isoformat(timespec="milliseconds") + "Z"


# --- file bodies: each returns about ``size`` bytes of one kind of file ------------------------


def _json_doc(head: dict[str, Any], key: str, size: int, item: Callable[[int], Any]) -> bytes:
    """``head`` plus a list under ``key`` grown with ``item(i)`` until about ``size`` bytes."""
    items: list[str] = []
    total = len(json.dumps(head))
    while total < size or not items:
        text = json.dumps(item(len(items)), ensure_ascii=False, indent=2)
        items.append(text)
        total += len(text) + 2
    body = json.dumps(head, ensure_ascii=False, indent=2)[:-2]
    joined = ",\n".join(items)
    return f'{body},\n  "{key}": [\n{joined}\n  ]\n}}\n'.encode()


def _lines(head: str, size: int, line: Callable[[int], str], tail: str = "") -> bytes:
    """``head``, then ``line(i)`` repeated until about ``size`` bytes, then ``tail``."""
    parts = [head]
    total = len(head) + len(tail)
    while total < size:
        parts.append(line(len(parts)))
        total += len(parts[-1])
    parts.append(tail)
    return "".join(parts).encode()


def _kb(g: _Gen, size: int) -> bytes:
    head = {"version": 3, "idioma": "es", "actualizado": g.timestamp()}
    return _json_doc(head, "entradas", size, lambda i: g.product(i) if i % 4 == 3 else g.qa(i))


def _catalog(g: _Gen, size: int) -> bytes:
    head = {"generado": g.timestamp(), "origen": "mongodb", "moneda": "MXN"}
    return _json_doc(head, "entradas", size, lambda i: g.product(i) if i % 2 else g.qa(i))


def _scenario(g: _Gen, size: int) -> bytes:
    head = {"nombre": g.question(), "descripcion": g.sentence(), "canal": "whatsapp"}
    roles = ("usuario", "asistente")
    return _json_doc(
        head, "mensajes", size, lambda i: {"rol": roles[i % 2], "texto": g.paragraph(i % 2 + 1)}
    )


def _n8n_node(g: _Gen, i: int) -> dict[str, Any]:
    kind = g.rng.choice(("webhook", "httpRequest", "mongoDb", "openAi", "if", "set", "code"))
    return {
        "id": f"{g.hex(8)}-{g.hex(4)}-{g.hex(4)}-{g.hex(12)}",
        "name": f"{kind} {i}",
        "type": f"n8n-nodes-base.{kind}",
        "typeVersion": g.rng.randint(1, 4),
        "position": [240 * i, g.rng.randrange(0, 600, 20)],
        "parameters": {"url": "http://localhost:3000/api/chat", "jsonBody": g.sentence()},
    }


def _n8n(g: _Gen, size: int) -> bytes:
    head = {"name": f"{g.rng.choice(_NOUNS)} {g.hex(4)}", "active": True, "settings": {}}
    return _json_doc(head, "nodes", size, lambda i: _n8n_node(g, i))


def _python(g: _Gen, size: int) -> bytes:
    head = (
        f'"""{g.sentence()}\n\n{g.paragraph(2)}\n"""\n\nimport os\n\n'
        'from pymongo import MongoClient\n\nMONGODB_URI = os.environ["MONGODB_URI"]\n'
    )

    def function(i: int) -> str:
        name, field = f"{g.rng.choice(_VERBS)}_{g.rng.choice(_NOUNS)}_{i}", g.rng.choice(_WORDS)
        return (
            f'\n\ndef {name}(db, valor):\n    """{g.sentence()}"""\n    # {g.sentence()}\n'
            f'    total = 0\n    for doc in db.{g.rng.choice(_NOUNS)}.find({{"{field}": valor}}):\n'
            f'        total += doc.get("{field}", {g.rng.randrange(100)})\n'
            f'    return {{"total": total, "mensaje": "{g.sentence()}"}}\n'
        )

    return _lines(head, size, function)


def _tsx(g: _Gen, size: int) -> bytes:
    name = g.rng.choice(_PASCAL) + g.rng.choice(_WIDGETS)
    head = (
        'import React, { useState } from "react";\n'
        f'import {{ formatPrice }} from "../lib/{g.rng.choice(_LIBS)}Utils";\n\n'
        f"interface {name}Props {{\n  sessionId: string;\n  precio?: number;\n}}\n\n"
        f"export default function {name}({{ sessionId, precio }}: {name}Props) {{\n"
        '  const [texto, setTexto] = useState("");\n  return (\n'
        f'    <div className="{name.lower()}" data-session={{sessionId}}>\n'
    )
    tail = "    </div>\n  );\n}\n"
    return _lines(head, size, lambda i: f"      <p key={{{i}}}>{g.sentence()}</p>\n", tail)


def _ts(g: _Gen, size: int) -> bytes:
    head = 'import { MongoClient } from "mongodb";\n\nconst API = process.env.API_URL ?? "";\n'

    def function(i: int) -> str:
        word = g.rng.choice(_WORDS)
        return (
            f"\n// {g.sentence()}\nexport function {g.rng.choice(_LIBS)}{i}(input: string)"
            f": string {{\n  return `${{API}}/{word}/` + input.trim();\n}}\n"
        )

    return _lines(head, size, function)


def _log_line(g: _Gen) -> str:
    level = g.rng.choices(("INFO", "DEBUG", "WARN", "ERROR"), (70, 20, 7, 3))[0]
    return (
        f"{g.timestamp()} {level} [{g.rng.choice(_SERVICES)}] {g.sentence()} "
        f"session={g.hex(8)} ms={g.rng.randrange(2, 3000)}\n"
    )


def _log(g: _Gen, size: int) -> bytes:
    return _lines("", size, lambda _i: _log_line(g))


# --- where each kind goes ----------------------------------------------------------------------


def _spread(base: str, i: int, name: str) -> str:
    """``base/name`` for the first files, then subdirectories of ``_PER_DIR`` files each."""
    if i < _PER_DIR:
        return f"{base}/{name}"
    batch = i // _PER_DIR
    return f"{base}/{_AREAS[batch % len(_AREAS)]}_{batch}/{name}"


def _name(i: int, firsts: tuple[str, ...], seconds: tuple[str, ...], suffix: str) -> str:
    """The ``i``-th distinct file name from two word lists, numbered once they run out.

    ``suffix`` is an optional one-character separator followed by the extension: "_.py".
    """
    sep, ext = ("", suffix) if suffix.startswith(".") else (suffix[0], suffix[1:])
    n = len(firsts) * len(seconds)
    name = f"{firsts[i % len(firsts)]}{sep}{seconds[(i // len(firsts)) % len(seconds)]}"
    return f"{name}{ext}" if i < n else f"{name}{sep or '_'}{i // n}{ext}"


def _kb_path(i: int) -> str:
    topic = _TOPICS[i % len(_TOPICS)]
    version = "" if i < len(_TOPICS) else f"_v{i // len(_TOPICS) + 1}"
    return f"base_conocimiento_{topic}{version}.json"


def _catalog_path(i: int) -> str:
    return f"kb_populated_{(date(2023, 1, 1) + timedelta(days=7 * i)):%Y%m%d}.json"


def _log_path(i: int) -> str:
    day = date(2024, 1, 1) + timedelta(days=i // len(_SERVICES))
    return f"logs/{_SERVICES[i % len(_SERVICES)]}-{day:%Y-%m-%d}.log"


class _Kind(NamedTuple):
    """One kind of small file: how many (share of the small files, at most ``cap``), how big
    (``typical`` size before scaling to the byte budget), where (``path`` of the i-th) and what
    (``body`` of about a given size)."""

    share: float
    cap: int
    typical: int
    path: Callable[[int], str]
    body: Callable[[_Gen, int], bytes]


def _python_path(i: int) -> str:
    return _spread("python-scripts", i, _name(i, _VERBS, _NOUNS, "_.py"))


def _tsx_path(i: int) -> str:
    return _spread("src/components", i, _name(i, _PASCAL, _WIDGETS, ".tsx"))


def _ts_path(i: int) -> str:
    return _spread("src/lib", i, _name(i, _LIBS, _LIB_ROLES, ".ts"))


def _n8n_path(i: int) -> str:
    return _spread("n8n_workflows", i, _name(i, _NOUNS, _VERBS, "_.json"))


def _scenario_path(i: int) -> str:
    return _spread("test_scenarios", i, f"escenario_{i:05d}.json")


_NO_CAP = 10**9
_KINDS: dict[str, _Kind] = {
    "kb": _Kind(0.04, len(_TOPICS), 100_000, _kb_path, _kb),
    "catalog": _Kind(0.04, 24, 150_000, _catalog_path, _catalog),
    "python": _Kind(0.20, _NO_CAP, 6_000, _python_path, _python),
    "tsx": _Kind(0.22, _NO_CAP, 4_000, _tsx_path, _tsx),
    "ts": _Kind(0.10, _NO_CAP, 3_000, _ts_path, _ts),
    "n8n": _Kind(0.08, _NO_CAP, 12_000, _n8n_path, _n8n),
    "log": _Kind(0.03, _NO_CAP, 100_000, _log_path, _log),
    "scenario": _Kind(0.0, _NO_CAP, 2_500, _scenario_path, _scenario),  # takes the rest
}


# --- the fixed files ---------------------------------------------------------------------------


def _env(g: _Gen) -> bytes:
    return (
        "# Fake credentials for the demo tree; none of these work anywhere.\n"
        f"OPENAI_API_KEY=sk-demo-{g.hex(48)}\n"
        "MONGODB_URI=mongodb://app:demo@localhost/chatbot\n"
        f"WHATSAPP_TOKEN=demo-{g.hex(40)}\n"
        "N8N_WEBHOOK_URL=http://localhost:5678/webhook/chatbot\n"
        f"JWT_SECRET=demo-{g.hex(32)}\nPORT=3000\nNODE_ENV=development\n"
    ).encode()


def _config_py(g: _Gen) -> bytes:
    return (
        f'"""Configuración del chatbot de ventas. {g.sentence()}"""\n\nimport os\n\n'
        'MONGODB_URI = os.environ["MONGODB_URI"]\nOPENAI_API_KEY = os.environ["OPENAI_API_KEY"]\n'
        'MODELO = "gpt-4o-mini"\nTEMPERATURA = 0.3\nMAX_TOKENS = 800\n'
        'COLECCIONES = ["conversaciones", "cotizaciones", "sessions", "context", "analytics"]\n'
        f'MENSAJE_BIENVENIDA = "{g.sentence()}"\n'
    ).encode()


def _package_json() -> bytes:
    deps = {"next": "14.1.0", "react": "18.2.0", "mongodb": "6.3.0", "openai": "4.28.0"}
    doc = {
        "name": "chatbot-ventas",
        "version": "1.4.2",
        "private": True,
        "scripts": {"dev": "next dev", "build": "next build", "start": "next start"},
        "dependencies": deps,
        "devDependencies": {"typescript": "5.3.3", "@types/react": "18.2.55"},
    }
    return (json.dumps(doc, indent=2) + "\n").encode()


_REQUIREMENTS = b"pymongo==4.6.1\nopenai==1.12.0\nfastapi==0.109.2\nuvicorn==0.27.1\n"
_NODE_MODULES = {
    "node_modules/.package-lock.json": b'{"name": "chatbot-ventas", "lockfileVersion": 3}\n',
    "node_modules/react/package.json": b'{"name": "react", "version": "18.2.0"}\n',
    "node_modules/react/index.js": b"module.exports = require('./cjs/react.production.min.js');\n",
    "node_modules/openai/package.json": b'{"name": "openai", "version": "4.28.0"}\n',
    "node_modules/openai/index.js": b"export * from './resources/index';\n",
    "node_modules/mongodb/package.json": b'{"name": "mongodb", "version": "6.3.0"}\n',
}


def _write_fixed(out: _Out, g: _Gen, small_budget: int) -> None:
    """The singleton files of the brief, ``node_modules``, and the consolidated knowledge base."""
    out.write(".env", _env(g), "env")
    out.write("config.py", _config_py(g), "config")
    out.write("package.json", _package_json(), "config")
    out.write("requirements.txt", _REQUIREMENTS, "config")
    for rel, data in _NODE_MODULES.items():
        out.write(rel, data, "node_modules")
    size = max(4_000, small_budget // 25)
    out.write("conocimiento_consolidado.json", _kb(g, size), "consolidated")


# --- the plan ----------------------------------------------------------------------------------


def _counts(n: int) -> dict[str, int]:
    """Split ``n`` small files among the kinds by share and cap; every kind gets at least one."""
    counts = {k: min(kind.cap, max(1, round(n * kind.share))) for k, kind in _KINDS.items()}
    counts["scenario"] = max(1, n - sum(counts.values()) + 1)
    return counts


def _sizes(
    rng: random.Random, counts: dict[str, int], budget: int, n_dups: int
) -> dict[str, list[int]]:
    """Log-normal sizes around each kind's typical size, scaled so that they and the
    ``n_dups`` duplicates ``_write_duplicates`` will make sum to ``budget``."""
    raw = {
        k: [_KINDS[k].typical * rng.lognormvariate(0, 0.7) for _ in range(n)]
        for k, n in counts.items()
    }
    sources = raw["kb"] + raw["catalog"]
    copied = sum(sources[_copy_of(j, len(sources))[0]] for j in range(n_dups))
    scale = budget / max(1.0, sum(sum(v) for v in raw.values()) + copied)
    return {k: [max(200, int(s * scale)) for s in v] for k, v in raw.items()}


def _write_small(out: _Out, g: _Gen, sizes: dict[str, list[int]]) -> None:
    for k, kind_sizes in sizes.items():
        kind = _KINDS[k]
        for i, size in enumerate(kind_sizes):
            out.write(kind.path(i), kind.body(g, size), k)


_COPIES = (
    *("python-scripts/exports/", " (copia)", "n8n_workflows/datos/", "test_scenarios/fixtures/"),
    *("src/data/", " (copia 2)", "python-scripts/data/", " (copia 3)"),
)
"""Where duplicates go: a folder prefix, or a suffix before ``.json`` for a top-level copy."""


def _copy_of(j: int, n_sources: int) -> tuple[int, int]:
    """Source index and flavour of the ``j``-th duplicate: two flavours of each source in turn."""
    return (j // 2) % n_sources, 2 * (j // (2 * n_sources)) + j % 2


def _copy_path(src: str, flavour: int) -> str:
    how = _COPIES[flavour] if flavour < len(_COPIES) else f" (copia {flavour})"
    return how + src if how.endswith("/") else src.removesuffix(".json") + how + ".json"


def _write_duplicates(out: _Out, n: int) -> None:
    """Exact copies of knowledge-base exports, alternating folder copies and ' (copia)' files."""
    sources = out.paths["kb"] + out.paths["catalog"]
    for j in range(n):
        i, flavour = _copy_of(j, len(sources))
        out.write(
            _copy_path(sources[i], flavour), (out.root / sources[i]).read_bytes(), "duplicate"
        )


def _write_large(out: _Out, rng: random.Random, n: int, budget: int, seed: int) -> None:
    """``n`` random binaries sharing ``budget`` bytes, written 1 MiB at a time."""
    weights = [rng.uniform(0.5, 1.5) for _ in range(n)]
    for i, w in enumerate(weights):
        size = max(1024, int(budget * w / sum(weights)))
        name = f"assets/{_LARGE_NAMES[i % len(_LARGE_NAMES)]}_{i}.bin"
        noise = random.Random(f"{seed}:{name}")
        path = out.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as f:
            for start in range(0, size, _MIB):
                f.write(noise.randbytes(min(_MIB, size - start)))
        out.files += 1
        out.bytes += size
        out.paths.setdefault("large", []).append(name)


def make_tree(
    root: Path, *, files: int = 200, total_bytes: int = 5 * _MIB, seed: int = 1
) -> TreeStats:
    """Write a chatbot application tree of about ``files`` files and ``total_bytes`` bytes.

    About 60% of the bytes are in a few large random binaries (8 when ``files`` >= 200), about
    1% of the files are exact duplicates of knowledge-base exports, six are under
    ``node_modules``; the rest are small JSON, Python, TypeScript and log files. Very small
    requests are rounded up to one file of each kind. Output depends only on the arguments.
    """
    rng = random.Random(seed)
    g = _Gen(rng)
    out = _Out(root)
    root.mkdir(parents=True, exist_ok=True)
    n_large = 8 if files >= 200 else max(1, files // 25)
    n_dups = max(2, files // 100)
    small_budget = int(total_bytes * (1 - LARGE_SHARE))
    _write_fixed(out, g, small_budget)
    n_small = max(len(_KINDS), files - out.files - n_large - n_dups)
    sizes = _sizes(rng, _counts(n_small), max(0, small_budget - out.bytes), n_dups)
    _write_small(out, g, sizes)
    _write_duplicates(out, n_dups)
    _write_large(out, rng, n_large, max(0, total_bytes - out.bytes), seed)
    return TreeStats(out.files, out.bytes)


# --- mutate ------------------------------------------------------------------------------------


def _ops(n: int) -> list[str]:
    """The first ``n`` operations: one of each kind early, then modify/append alternately."""
    head = ["large", "delete", "create", "modify", "append", "delete", "create"]
    return (head + ["modify", "append"] * n)[:n]


def _edit_json(text: str, g: _Gen) -> str:
    """Insert a reworded copy of an entry into the longest list and bump ``actualizado``."""
    doc = json.loads(text)
    if not isinstance(doc, dict):
        return text + "\n"  # still valid JSON, and a change
    lists = [v for v in doc.values() if isinstance(v, list) and v]
    if lists:
        items = max(lists, key=len)
        entry = items[g.rng.randrange(len(items))]
        if isinstance(entry, dict):
            entry = {
                k: g.sentence() if isinstance(v, str) and len(v) > 30 else v
                for k, v in entry.items()
            }
            if "precio" in entry:
                entry["precio"] = round(entry["precio"] * g.rng.uniform(0.8, 1.2), 2)
        items.insert(g.rng.randrange(len(items) + 1), entry)
    doc["actualizado"] = g.timestamp()
    return json.dumps(doc, ensure_ascii=False, indent=2) + "\n"


def _comment(path: Path, g: _Gen) -> str:
    if path.suffix == ".log":
        return _log_line(g)
    prefix = "// " if path.suffix in (".ts", ".tsx") else "# "
    return f"{prefix}{g.sentence()}\n"


def _modify(path: Path, g: _Gen) -> None:
    """Edit a small file in place: structured for JSON, one inserted line for text."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        path.write_text(_edit_json(text, g), encoding="utf-8")
        return
    lines = text.splitlines(keepends=True)
    lines.insert(g.rng.randrange(len(lines) + 1), _comment(path, g))
    path.write_text("".join(lines), encoding="utf-8")


def _append(path: Path, g: _Gen) -> None:
    with path.open("a", encoding="utf-8") as f:
        f.writelines(_comment(path, g) for _ in range(g.rng.randint(3, 30)))


def _edit_large(path: Path, g: _Gen) -> None:
    """Overwrite up to 64 KiB in the middle of a large file."""
    size = path.stat().st_size
    with path.open("r+b") as f:
        f.seek(size // 2)
        f.write(g.rng.randbytes(max(1, min(64 * 1024, size // 4))))


def _create(root: Path, g: _Gen, i: int) -> Path:
    if i % 2:
        path = root / f"python-scripts/nuevo_{g.hex(8)}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(_python(g, 3_000))
    else:
        path = root / f"test_scenarios/escenario_nuevo_{g.hex(8)}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(_scenario(g, 2_000))
    return path


def _pick(
    rng: random.Random, root: Path, small: list[Path], ops: list[str]
) -> dict[str, list[Path]]:
    """Distinct small files for each operation; deletions only below the top level."""
    appendable = [p for p in small if p.suffix in _APPENDABLE]
    append = rng.sample(appendable, min(ops.count("append"), len(appendable)))
    taken = set(append)
    deletable = [p for p in small if p not in taken and len(p.relative_to(root).parts) > 1]
    delete = rng.sample(deletable, min(ops.count("delete"), len(deletable)))
    taken.update(delete)
    modifiable = [p for p in small if p not in taken]
    modify = rng.sample(modifiable, min(ops.count("modify"), len(modifiable)))
    return {"append": append, "delete": delete, "modify": modify}


def mutate(root: Path, fraction: float = 0.01, seed: int = 2) -> list[Path]:
    """Change about ``fraction`` of the files under ``root`` (``node_modules`` aside).

    Edits small files in place (JSON structurally, text by an inserted line), appends to
    logs and source files, overwrites 64 KiB in the middle of one large binary, deletes a
    couple of files in subdirectories and creates a couple of new ones. Returns the paths
    changed, created or deleted, sorted. The same tree and seed give the same changes.
    """
    g = _Gen(random.Random(seed))
    files = sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and "node_modules" not in p.relative_to(root).parts
    )
    large = [p for p in files if p.suffix == ".bin"]
    small = [p for p in files if p.suffix != ".bin"]
    ops = _ops(max(1, round(fraction * len(files))))
    if not large:
        ops = ["modify" if op == "large" else op for op in ops]
    picked = _pick(g.rng, root, small, ops)
    for p in picked["append"]:
        _append(p, g)
    for p in picked["modify"]:
        _modify(p, g)
    for p in picked["delete"]:
        p.unlink()
    changed = [p for paths in picked.values() for p in paths]
    if "large" in ops:
        changed.append(g.rng.choice(large))
        _edit_large(changed[-1], g)
    changed += [_create(root, g, i) for i in range(ops.count("create"))]
    return sorted(changed)
