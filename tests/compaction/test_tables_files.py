"""Reading the files table back: ``file_images`` (by column) agrees with ``file_image``."""

from __future__ import annotations

from compaction.tables import TableRef, file_image, file_images, file_row, to_batch
from journal.events import ChangeEvent, FileImage, Op, Source

IMAGES = {
    "kb/conocimiento_consolidado.json": FileImage("ab" * 32, 3, "cd" * 32, 0o644, 1_000),
    "link": FileImage("", 0, "", 0o777, 2_000, link_target="kb/conocimiento_consolidado.json"),
    ".env": FileImage("ef" * 32, 40, "", 0o600, 3_000),  # a secret: no SHA-256 in clear
}


def test_file_images_reads_every_row_as_file_image_does() -> None:
    events = [
        ChangeEvent(Source.FILESYSTEM, "app", key, Op.CREATE, n, image, seq=n)
        for n, (key, image) in enumerate(IMAGES.items(), 1)
    ]
    batch = to_batch(TableRef.files("app"), [file_row(e, e.after) for e in events])  # type: ignore[arg-type]
    by_columns = dict(file_images(batch))
    by_rows = {row["key"]: file_image(row) for row in batch.to_pylist()}
    assert by_columns == by_rows == IMAGES
