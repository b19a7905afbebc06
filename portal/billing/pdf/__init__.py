"""Invoice and note documents as PDF (fpdf2, DejaVu Sans bundled under `fonts/`).

`parties.py` who issues and who is billed (kept on the invoice when it is finalized);
`text.py` the words and numbers the document prints; `render.py` the layout."""
