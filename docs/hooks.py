"""MkDocs hooks of the dj_cqrs documentation (``hooks:`` in mkdocs.yml).

``<!-- include: bench-results -->`` in a page is replaced by the "Latest results" section that
``bench/run.py`` writes into ``bench/README.md`` (between its ``latest-results`` markers), so the
benchmark table has one source.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BENCH_README = REPO / 'bench' / 'README.md'
START, END = '<!-- latest-results:start -->', '<!-- latest-results:end -->'
PLACEHOLDER = '<!-- include: bench-results -->'
NO_RESULTS = (
    '!!! note\n'
    '    No benchmark results have been recorded yet: run `.venv/bin/python bench/run.py` '
    '(see the command above) to produce them.\n'
)


def bench_results() -> str:
    try:
        text = BENCH_README.read_text(encoding='utf-8')
    except OSError:
        return NO_RESULTS
    if START not in text or END not in text:
        return NO_RESULTS
    section = text.split(START, 1)[1].split(END, 1)[0].strip()
    # Headings of the README section sit one level below this page's headings.
    section = re.sub(r'^(#+) ', lambda m: '#' + m.group(1) + ' ', section, flags=re.MULTILINE)
    # Relative links point into bench/, which is not part of the site: keep their text only.
    section = re.sub(r'\[([^\]]+)\]\((?!https?://)[^)]*\)', r'\1', section)
    return section or NO_RESULTS


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if PLACEHOLDER in markdown:
        markdown = markdown.replace(PLACEHOLDER, bench_results())
    return markdown
