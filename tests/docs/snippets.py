"""Finding the code snippets of the documentation (see docs/contributing.md for the conventions).

A fenced block is preceded, on the line just above its fence, by an HTML comment that says what to
do with it:

* ``<!-- run -->``: executed. Python blocks run in order in one namespace per page, inside the docs
  sandbox project (``tests/docs/sandbox_settings.py``); shell blocks run their ``manage.py``
  commands through ``call_command`` in the same process, so they see the models and rows the page's
  Python blocks made;
* ``<!-- run: settings -->``: a Python block that is a piece of a settings module; it runs alone
  and the ``CQRS`` dict it defines must pass the dj_cqrs system checks without any message;
* ``<!-- run: output -->``: a shell block whose lines without ``$`` are output the commands must
  print (each line must appear; ``<...>`` matches anything);
* ``<!-- norun: why -->``: shown only, never run; the reason is required.

Every ``python`` block must carry one of them, and so must every shell block with a ``manage.py``
command.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / 'docs'

PYTHON = frozenset({'python', 'py', 'python3'})
SHELL = frozenset({'console', 'bash', 'shell', 'sh'})
MARKER = re.compile(r'^<!--\s*(run|norun)\s*(?::\s*(.*?))?\s*-->$')
FENCE = re.compile(r'^(\s*)(```+|~~~+)\s*([\w+-]*)')


@dataclass(frozen=True)
class Snippet:
    page: str  # path relative to docs/
    line: int  # line of the opening fence, 1-based
    lang: str
    action: str | None  # 'run', 'norun' or None (no marker)
    option: str  # text after ':' in the marker ('' if none)
    code: str

    @property
    def where(self) -> str:
        return f'docs/{self.page}:{self.line}'

    @property
    def is_python(self) -> bool:
        return self.lang in PYTHON

    @property
    def is_shell(self) -> bool:
        return self.lang in SHELL

    @property
    def has_manage_py(self) -> bool:
        return any(command_of(line) is not None for line in self.code.splitlines())


def parse(page: Path) -> list[Snippet]:
    lines = page.read_text(encoding='utf-8').splitlines()
    rel = page.relative_to(DOCS).as_posix()
    found: list[Snippet] = []
    index = 0
    while index < len(lines):
        match = FENCE.match(lines[index])
        if not match:
            index += 1
            continue
        indent, fence, lang = match.group(1), match.group(2), match.group(3).lower()
        start = index
        body: list[str] = []
        index += 1
        while index < len(lines) and not lines[index].strip().startswith(fence):
            text = lines[index]
            body.append(text[len(indent) :] if text.startswith(indent) else text.lstrip())
            index += 1
        index += 1  # the closing fence
        marker = MARKER.match(lines[start - 1].strip()) if start else None
        action = marker.group(1) if marker else None
        option = (marker.group(2) or '').strip() if marker else ''
        found.append(Snippet(rel, start + 1, lang, action, option, '\n'.join(body) + '\n'))
    return found


def pages() -> list[Path]:
    return sorted(DOCS.rglob('*.md'))


def all_snippets() -> list[Snippet]:
    return [snippet for page in pages() for snippet in parse(page)]


COMMAND = re.compile(r'^\$\s*(?:(?:\./)?manage\.py|python3?\s+(?:\./)?manage\.py|django-admin)\s+(.*)$')


def command_of(line: str) -> str | None:
    """``cqrs_status --json`` for ``$ ./manage.py cqrs_status --json``; None for other lines."""
    match = COMMAND.match(line.strip())
    return match.group(1).strip() if match else None
