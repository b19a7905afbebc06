"""Invoice PDFs print every script a customer's name, address or line may hold: DejaVu Sans
for Latin, Greek, Cyrillic, Arabic and Hebrew, fallback fonts for the rest (Devanagari shaped,
CJK, Hangul, Thai); a character no font has prints as U+FFFD and is logged, never dropped."""

from __future__ import annotations

import io
import logging
import unicodedata
from typing import Any

import msgspec
import pypdf
import pytest

from portal.billing.pdf.parties import BillTo, Parties
from portal.billing.pdf.render import invoice_pdf
from tests.billing.test_invoice_documents import BERLIN, PARTIES, invoice, line, text_of

NAME = "इनिटेक प्राइवेट लिमिटेड"  # Devanagari, with conjuncts (प्र, ड)
ADDRESS = [
    "कोलकाता 700001",
    "中文地址 東京都",  # Chinese and Japanese kanji
    "とうきょう カタカナ",  # Japanese kana
    "서울특별시 강남구",  # Korean
    "ООО «Ромашка», Москва",  # Cyrillic
    "תל אביב",  # Hebrew
    "กรุงเทพมหานคร",  # Thai
    "Hauptstraße 5",  # Latin after lines that start in a fallback font
]
DESCRIPTION = "Платформа 東京 플랫폼 शुल्क"


def parties(*, name: str = NAME, address: list[str] | None = None) -> Parties:
    bill_to = BillTo(name, ADDRESS if address is None else address, "", "initech")
    return msgspec.structs.replace(PARTIES, bill_to=bill_to)


def international_pdf(*, description: str = DESCRIPTION, **party: Any) -> bytes:
    lines = [line(0, "flat", description, "49.00")]
    return invoice_pdf(invoice(lines=lines), parties(**party), BERLIN)


def letters_of(pdf: bytes) -> str:
    """The text read back without control characters: fpdf2 maps a shaped cluster's text to
    its first glyph, so pypdf reads the other glyphs of a Devanagari cluster as raw codes."""
    return "".join(c for c in text_of(pdf) if c == "\n" or unicodedata.category(c) != "Cc")


def font_names(pdf: bytes) -> set[str]:
    fonts = pypdf.PdfReader(io.BytesIO(pdf)).pages[0]["/Resources"]["/Font"]
    return {str(font.get_object()["/BaseFont"]).split("+")[-1] for font in fonts.values()}


def sizes_at(pdf: bytes, text: str) -> set[float]:
    """The font sizes (pt) in effect where the page draws the line `text`, as a viewer sees
    them: a size set between q and Q ends at Q (pypdf's own reading keeps it)."""
    reader = pypdf.PdfReader(io.BytesIO(pdf))
    page = reader.pages[0]
    heights: set[float] = set()

    def visit(shown: str, cm: Any, tm: Any, font: Any, size: float) -> None:
        if text in shown:
            heights.add(round(tm[5], 2))

    page.extract_text(visitor_text=visit)
    saved: list[float | None] = []
    size: float | None = None
    y: float | None = None
    sizes: set[float] = set()
    for operands, operator in pypdf.generic.ContentStream(page.get_contents(), reader).operations:
        if operator == b"q":
            saved.append(size)
        elif operator == b"Q":
            size = saved.pop()
        elif operator == b"Tf":
            size = float(operands[1])
        elif operator in (b"Td", b"Tm"):
            y = round(float(operands[-1]), 2)
        elif operator in (b"Tj", b"TJ") and y in heights and size is not None:
            sizes.add(size)
    return sizes


def test_every_script_of_the_bill_to_party_and_a_line_reads_back() -> None:
    text = letters_of(international_pdf())

    for expected in [NAME, *ADDRESS, DESCRIPTION]:
        assert expected in text


def test_no_glyph_is_missing(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        international_pdf()

    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_the_fallback_fonts_are_embedded() -> None:
    names = font_names(international_pdf())

    assert names == {
        "DejaVuSansBook",
        "DejaVuSansBold",
        "NotoSansDevanagariBold",  # the name
        "NotoSansDevanagari",
        "DroidSansFallback",
        "NanumSquare",
        "NotoSansThai",
    }


def test_a_latin_line_after_a_fallback_first_line_prints_at_its_own_size() -> None:
    # fpdf2 2.8.9 printed it at the "Bill to" heading's 8 pt (py-pdf/fpdf2#1772).
    pdf = international_pdf(address=["東京都", "Hauptstraße 5"])

    assert sizes_at(pdf, "Hauptstraße 5") == {9.0}


def test_arabic_prints_in_dejavu_sans_shaped() -> None:
    pdf = international_pdf(name="شركة القاهرة", address=["תל אביב"], description="رسوم المنصة")

    assert "شركة القاهرة" in text_of(pdf)
    assert font_names(pdf) == {"DejaVuSansBook", "DejaVuSansBold"}


def test_a_latin_invoice_embeds_only_dejavu_sans() -> None:
    pdf = invoice_pdf(invoice(), PARTIES, BERLIN)

    assert font_names(pdf) == {"DejaVuSansBook", "DejaVuSansBold"}


def test_the_same_international_invoice_gives_the_same_bytes() -> None:
    assert international_pdf() == international_pdf()


def test_a_character_no_font_has_prints_as_a_replacement_and_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="portal.billing.pdf.document"):
        pdf = international_pdf(name="Initech 🙂")

    assert "Initech \ufffd" in text_of(pdf)
    assert [r.getMessage() for r in caplog.records] == [
        "no font for U+1F642 in 'Invoice INV-000001': printed as U+FFFD"
    ]
