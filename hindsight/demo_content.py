"""What the files of the demo tree say: seeded text in Spanish, and a body per kind of file.

``hindsight.demo`` decides which files a tree has, where they go and how big they are; this
module holds the vocabularies and templates their names and contents are drawn from, the
seeded ``ContentGen`` that fills them, and one function per kind of file returning about a
given number of bytes of it. Every draw goes through the generator's ``random.Random``, in a
fixed order, so the same seed gives the same bytes. Every secret written here is fake.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

__all__ = [
    "AREAS",
    "LARGE_NAMES",
    "LIBS",
    "LIB_ROLES",
    "NODE_MODULES",
    "NOUNS",
    "PASCAL",
    "REQUIREMENTS",
    "SERVICES",
    "TOPICS",
    "VERBS",
    "WIDGETS",
    "ContentGen",
    "catalog_json",
    "config_py",
    "env_file",
    "kb_json",
    "log_line",
    "log_text",
    "n8n_json",
    "package_json",
    "python_source",
    "scenario_json",
    "ts_source",
    "tsx_source",
]

# --- vocabularies and templates ----------------------------------------------------------------

_POOL = 4096  # distinct sentences per generator; files draw from this pool
LARGE_NAMES = (  # of the large binaries
    *("catalogo_imagenes", "modelo_embeddings", "video_demo", "fotos_productos"),
    *("audio_bienvenida", "banners_promocion", "indice_vectorial", "respaldo_medios"),
)

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
TOPICS = (
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
PASCAL = (
    *("Chat", "Product", "Quote", "Message", "Catalog", "Cart", "Order", "Session"),
    *("Admin", "Analytics", "Knowledge", "User"),
)
WIDGETS = (
    *("Window", "Card", "Form", "List", "Panel", "Modal", "Header", "Footer"),
    *("Item", "Badge", "Table", "View"),
)
LIBS = ("api", "mongo", "openai", "whatsapp", "session", "pricing", "catalog", "quote", "format")
LIB_ROLES = ("Client", "Utils", "Types", "Service", "Helpers", "Store")
VERBS = ("sync", "import", "export", "clean", "migrate", "check", "build", "load", "send")
NOUNS = (
    *("catalogo", "kb", "precios", "conversaciones", "cotizaciones", "sesiones"),
    *("usuarios", "analytics", "embeddings", "inventario", "respuestas", "reportes"),
)
SERVICES = ("app", "webhook", "n8n", "mongo", "openai", "errores")
AREAS = ("chat", "catalogo", "cotizaciones", "admin", "analytics", "soporte", "ventas")


# --- the generator -----------------------------------------------------------------------------


class ContentGen:
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
            "categoria": self.rng.choice(TOPICS),
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


def kb_json(g: ContentGen, size: int) -> bytes:
    head = {"version": 3, "idioma": "es", "actualizado": g.timestamp()}
    return _json_doc(head, "entradas", size, lambda i: g.product(i) if i % 4 == 3 else g.qa(i))


def catalog_json(g: ContentGen, size: int) -> bytes:
    head = {"generado": g.timestamp(), "origen": "mongodb", "moneda": "MXN"}
    return _json_doc(head, "entradas", size, lambda i: g.product(i) if i % 2 else g.qa(i))


def scenario_json(g: ContentGen, size: int) -> bytes:
    head = {"nombre": g.question(), "descripcion": g.sentence(), "canal": "whatsapp"}
    roles = ("usuario", "asistente")
    return _json_doc(
        head, "mensajes", size, lambda i: {"rol": roles[i % 2], "texto": g.paragraph(i % 2 + 1)}
    )


def _n8n_node(g: ContentGen, i: int) -> dict[str, Any]:
    kind = g.rng.choice(("webhook", "httpRequest", "mongoDb", "openAi", "if", "set", "code"))
    return {
        "id": f"{g.hex(8)}-{g.hex(4)}-{g.hex(4)}-{g.hex(12)}",
        "name": f"{kind} {i}",
        "type": f"n8n-nodes-base.{kind}",
        "typeVersion": g.rng.randint(1, 4),
        "position": [240 * i, g.rng.randrange(0, 600, 20)],
        "parameters": {"url": "http://localhost:3000/api/chat", "jsonBody": g.sentence()},
    }


def n8n_json(g: ContentGen, size: int) -> bytes:
    head = {"name": f"{g.rng.choice(NOUNS)} {g.hex(4)}", "active": True, "settings": {}}
    return _json_doc(head, "nodes", size, lambda i: _n8n_node(g, i))


def python_source(g: ContentGen, size: int) -> bytes:
    head = (
        f'"""{g.sentence()}\n\n{g.paragraph(2)}\n"""\n\nimport os\n\n'
        'from pymongo import MongoClient\n\nMONGODB_URI = os.environ["MONGODB_URI"]\n'
    )

    def function(i: int) -> str:
        name, field = f"{g.rng.choice(VERBS)}_{g.rng.choice(NOUNS)}_{i}", g.rng.choice(_WORDS)
        return (
            f'\n\ndef {name}(db, valor):\n    """{g.sentence()}"""\n    # {g.sentence()}\n'
            f'    total = 0\n    for doc in db.{g.rng.choice(NOUNS)}.find({{"{field}": valor}}):\n'
            f'        total += doc.get("{field}", {g.rng.randrange(100)})\n'
            f'    return {{"total": total, "mensaje": "{g.sentence()}"}}\n'
        )

    return _lines(head, size, function)


def tsx_source(g: ContentGen, size: int) -> bytes:
    name = g.rng.choice(PASCAL) + g.rng.choice(WIDGETS)
    head = (
        'import React, { useState } from "react";\n'
        f'import {{ formatPrice }} from "../lib/{g.rng.choice(LIBS)}Utils";\n\n'
        f"interface {name}Props {{\n  sessionId: string;\n  precio?: number;\n}}\n\n"
        f"export default function {name}({{ sessionId, precio }}: {name}Props) {{\n"
        '  const [texto, setTexto] = useState("");\n  return (\n'
        f'    <div className="{name.lower()}" data-session={{sessionId}}>\n'
    )
    tail = "    </div>\n  );\n}\n"
    return _lines(head, size, lambda i: f"      <p key={{{i}}}>{g.sentence()}</p>\n", tail)


def ts_source(g: ContentGen, size: int) -> bytes:
    head = 'import { MongoClient } from "mongodb";\n\nconst API = process.env.API_URL ?? "";\n'

    def function(i: int) -> str:
        word = g.rng.choice(_WORDS)
        return (
            f"\n// {g.sentence()}\nexport function {g.rng.choice(LIBS)}{i}(input: string)"
            f": string {{\n  return `${{API}}/{word}/` + input.trim();\n}}\n"
        )

    return _lines(head, size, function)


def log_line(g: ContentGen) -> str:
    level = g.rng.choices(("INFO", "DEBUG", "WARN", "ERROR"), (70, 20, 7, 3))[0]
    return (
        f"{g.timestamp()} {level} [{g.rng.choice(SERVICES)}] {g.sentence()} "
        f"session={g.hex(8)} ms={g.rng.randrange(2, 3000)}\n"
    )


def log_text(g: ContentGen, size: int) -> bytes:
    return _lines("", size, lambda _i: log_line(g))


# --- the fixed files' contents -----------------------------------------------------------------


def env_file(g: ContentGen) -> bytes:
    return (
        "# Fake credentials for the demo tree; none of these work anywhere.\n"
        f"OPENAI_API_KEY=sk-demo-{g.hex(48)}\n"
        "MONGODB_URI=mongodb://app:demo@localhost/chatbot\n"
        f"WHATSAPP_TOKEN=demo-{g.hex(40)}\n"
        "N8N_WEBHOOK_URL=http://localhost:5678/webhook/chatbot\n"
        f"JWT_SECRET=demo-{g.hex(32)}\nPORT=3000\nNODE_ENV=development\n"
    ).encode()


def config_py(g: ContentGen) -> bytes:
    return (
        f'"""Configuración del chatbot de ventas. {g.sentence()}"""\n\nimport os\n\n'
        'MONGODB_URI = os.environ["MONGODB_URI"]\nOPENAI_API_KEY = os.environ["OPENAI_API_KEY"]\n'
        'MODELO = "gpt-4o-mini"\nTEMPERATURA = 0.3\nMAX_TOKENS = 800\n'
        'COLECCIONES = ["conversaciones", "cotizaciones", "sessions", "context", "analytics"]\n'
        f'MENSAJE_BIENVENIDA = "{g.sentence()}"\n'
    ).encode()


def package_json() -> bytes:
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


REQUIREMENTS = b"pymongo==4.6.1\nopenai==1.12.0\nfastapi==0.109.2\nuvicorn==0.27.1\n"
NODE_MODULES = {
    "node_modules/.package-lock.json": b'{"name": "chatbot-ventas", "lockfileVersion": 3}\n',
    "node_modules/react/package.json": b'{"name": "react", "version": "18.2.0"}\n',
    "node_modules/react/index.js": b"module.exports = require('./cjs/react.production.min.js');\n",
    "node_modules/openai/package.json": b'{"name": "openai", "version": "4.28.0"}\n',
    "node_modules/openai/index.js": b"export * from './resources/index';\n",
    "node_modules/mongodb/package.json": b'{"name": "mongodb", "version": "6.3.0"}\n',
}
