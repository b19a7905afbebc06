"""The PDF document every invoice and note is drawn on: A4, DejaVu Sans for Latin, Greek,
Cyrillic, Arabic, Hebrew, €, ₹, and fallback fonts for the scripts it lacks (`FALLBACKS`),
added to a document only when it prints one of their characters, so its bytes depend only on
its text."""

from __future__ import annotations

import logging
import unicodedata
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from fontTools.ttLib import TTFont  # type: ignore[import-untyped]  # fpdf2 depends on it; no stubs
from fpdf import FPDF
from fpdf.fonts import TTFFont
from fpdf.line_break import TextLine

log = logging.getLogger(__name__)

FONTS = Path(__file__).parent / "fonts"
FONT = "DejaVu"
GREY = (90, 90, 90)


@dataclass(frozen=True, slots=True)
class Fallback:
    """A font for the characters DejaVu Sans lacks; `bold` None: bold text prints regular."""

    family: str
    regular: str
    bold: str | None


# A character DejaVu Sans lacks prints in the first of these that has it (none: it prints as
# U+FFFD and is logged). Versions, sources and licences: fonts/LICENSE, static/VENDORED.md.
FALLBACKS = (
    Fallback("NotoDeva", "NotoSansDevanagari-Regular.ttf", "NotoSansDevanagari-Bold.ttf"),
    Fallback("NotoThai", "NotoSansThai-Regular.ttf", "NotoSansThai-Bold.ttf"),
    # DejaVu has the Arabic and Hebrew letters and their shaping; these add the rest (Urdu's ے).
    Fallback("NotoArab", "NotoSansArabic-Regular.ttf", "NotoSansArabic-Bold.ttf"),
    Fallback("NotoHebr", "NotoSansHebrew-Regular.ttf", "NotoSansHebrew-Bold.ttf"),
    # Chinese and Japanese (Han in its Chinese forms, kana, full-width forms): 4 MB, no bold.
    Fallback("DroidCJK", "DroidSansFallbackFull.ttf", None),
    Fallback("NanumSquare", "NanumSquareR.ttf", "NanumSquareB.ttf"),  # Korean
    Fallback("NotoSym", "NotoSansSymbols-Regular.ttf", None),
    Fallback("NotoSym2", "NotoSansSymbols2-Regular.ttf", None),
)


@cache
def _coverage() -> tuple[frozenset[int], ...]:
    """The code points of each of FALLBACKS, read once per process (~0.15 s)."""
    return tuple(frozenset(TTFont(FONTS / f.regular, lazy=True).getBestCmap()) for f in FALLBACKS)


def _needs_shaping(text: str) -> bool:
    """Whether the text holds a script that HarfBuzz must shape: Hebrew to Khmer and Mongolian
    (Arabic joining and right-to-left runs, Devanagari conjuncts, Thai marks), the Indic
    extensions, or a combining mark."""
    return not text.isascii() and any(
        0x0590 <= ord(c) <= 0x1CFF or 0xA800 <= ord(c) <= 0xABFF or unicodedata.combining(c) for c in text
    )


def _fallback_for(point: int) -> Fallback | None:
    return next((f for f, points in zip(FALLBACKS, _coverage(), strict=True) if point in points), None)


class Document(FPDF):
    def __init__(self, footer: str) -> None:
        super().__init__(orientation="portrait", unit="mm", format="A4")
        self._footer = footer
        self._fallbacks: list[str] = []
        self._unprintable: set[str] = set()
        self.set_margins(15, 15, 15)
        self.set_auto_page_break(auto=True, margin=20)
        self.add_font(FONT, "", str(FONTS / "DejaVuSans.ttf"))
        self.add_font(FONT, "B", str(FONTS / "DejaVuSans-Bold.ttf"))
        self.set_producer("usage-portal")

    def get_fallback_font(self, char: str, style: str = "") -> str | None:
        """The font key for a character the current font lacks. A fallback font is added on
        first use only (parsing the CJK one takes ~0.2 s), so a document embeds only the fonts
        it prints with, in the order it first needs them: the same invoice, the same bytes."""
        fallback = _fallback_for(ord(char))
        if fallback is None:
            return None
        bold = fallback.bold if "B" in style else None
        emphasis = "B" if bold else ""
        key = f"{fallback.family.lower()}{emphasis}"
        if key not in self.fonts:
            self.add_font(fallback.family, emphasis, str(FONTS / (bold or fallback.regular)))
            if fallback.family not in self._fallbacks:
                self._fallbacks.append(fallback.family)
            self.set_fallback_fonts(self._fallbacks)
        return key

    def normalize_text(self, text: str) -> str:
        """The text as printed, shaped if its script needs it. A character no font here has
        prints as U+FFFD (logged once per document) rather than vanishing silently."""
        text = super().normalize_text(text)
        if self.text_shaping is None and _needs_shaping(text):
            # From here on, for the rest of the document: shaping Latin text is ~25% slower and
            # changes its bytes, so a document without such a script stays as it always printed.
            # No kerning, so a line measured before prints the same after.
            self.set_text_shaping(True, features={"kern": False})
        font = self.current_font
        if not isinstance(font, TTFFont) or all(ord(c) in font.cmap for c in text):
            return text
        printed = []
        for c in text:
            # Adding the fallback font here also turns on fpdf2's per-character font choice,
            # which it skips while no fallback font is set.
            if (
                ord(c) in font.cmap
                or unicodedata.category(c) in ("Cc", "Cf")
                or self.get_fallback_font(c, self.font_style)
            ):
                printed.append(c)
                continue
            printed.append("\ufffd")
            if c not in self._unprintable:
                self._unprintable.add(c)
                log.warning("no font for U+%04X in %r: printed as U+FFFD", ord(c), self._footer)
        return "".join(printed)

    def _render_styled_text_line(self, text_line: TextLine, *args: Any, **kwargs: Any) -> bool:
        # fpdf2 2.8.9 (py-pdf/fpdf2#1772): a line that starts in a fallback font sets the page's
        # font only inside its own q/Q yet counts it as set, so the lines after it print in the
        # previous size, or not at all. Set it on the page first, as fpdf2 does for other lines.
        if self.page and self.current_font is not None and not self.current_font_is_set_on_page:
            self._out(self._set_font_for_page(self.current_font, self.font_size_pt))
        return super()._render_styled_text_line(text_line, *args, **kwargs)

    def footer(self) -> None:
        self.set_y(-14)
        self.set_font(FONT, "", 8)
        self.set_text_color(*GREY)
        self.cell(0, 5, f"{self._footer} · page {self.page_no()} of {{nb}}", align="C")
        self.set_text_color(0, 0, 0)
