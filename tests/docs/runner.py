"""Runs the ``<!-- run -->`` snippets of one documentation page in the docs sandbox.

    python -m tests.docs.runner docs/testing.md

Started by tests/docs/test_snippets.py in a subprocess per page, so that the models a page defines
never meet another page's (or the test suite's). Python blocks are executed in order in one
namespace whose ``__name__`` is the sandbox app's models module, so classes they define are models
of that app, and get their tables as soon as they are defined. Functions named ``test_*`` that a
block defines are called after it. Shell blocks run each ``manage.py`` command with
``call_command``; ``a | b`` feeds a's output to b as stdin; commands that never return on their
own (``runserver``, ``cqrs_consume``, ``cqrs_relay`` without ``--once``) are only parsed.
"""

from __future__ import annotations

import io
import os
import re
import shlex
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any

LONG_RUNNING = {'runserver', 'cqrs_consume', 'shell', 'dbshell'}
MODELS_MODULE = 'tests.docs.docs_app.models'


class SnippetFailed(Exception):
    pass


def setup(sandbox: Path) -> None:
    os.environ['DOCS_SANDBOX_DIR'] = str(sandbox)
    os.environ['DJANGO_SETTINGS_MODULE'] = 'tests.docs.sandbox_settings'
    import django

    django.setup()
    from django.core.management import call_command

    os.chdir(sandbox)  # files the commands write (dumps) land in the sandbox
    from django.db.models.signals import class_prepared

    class_prepared.connect(_create_table)

    call_command('migrate', verbosity=0, interactive=False)


def _create_table(sender: Any, **kwargs: Any) -> None:
    """``class_prepared``: a model a snippet defines gets its table at once (usable in the same block)."""
    from django.db import connection

    meta = sender._meta
    if meta.app_label != 'docs_app' or meta.proxy or not meta.managed:
        return
    with connection.schema_editor() as editor:
        if meta.db_table in connection.introspection.table_names():
            editor.delete_model(sender)  # redefined by a later block: start over
        editor.create_model(sender)


def run_python(code: str, namespace: dict[str, Any], where: str) -> None:
    old = dict(namespace)
    exec(compile(code, where, 'exec'), namespace)
    for name, value in list(namespace.items()):
        if name.startswith('test_') and callable(value) and old.get(name) is not value:
            value()


def _command_parts(text: str) -> list[list[str]]:
    from tests.docs.snippets import command_of

    parts = []
    for index, piece in enumerate(text.split(' | ')):
        piece = piece.strip()
        if index:
            stripped = command_of(f'$ {piece}')
            if stripped is None:
                raise SnippetFailed(f'only manage.py commands can be piped: {piece!r}')
            piece = stripped
        parts.append(shlex.split(piece))
    return parts


def run_command(argv: list[str], stdin: str | None) -> str:
    from django.core.management import call_command, get_commands, load_command_class

    name, args = argv[0], argv[1:]
    app = get_commands().get(name)
    if app is None:
        raise SnippetFailed(f'unknown command {name!r}')
    if name in LONG_RUNNING or (name == 'cqrs_relay' and '--once' not in args):
        command = load_command_class(app, name)
        command.create_parser('manage.py', name).parse_args(args)  # flags are checked, nothing runs
        return ''
    out, err = io.StringIO(), io.StringIO()
    kwargs: dict[str, Any] = {'stdout': out, 'stderr': err}
    if stdin is not None:
        kwargs['stdin'] = io.StringIO(stdin)
    call_command(name, *args, **kwargs)
    return out.getvalue() + err.getvalue()


def run_shell(code: str, option: str, where: str) -> None:
    from tests.docs.snippets import command_of

    outputs: list[str] = []
    expected: list[str] = []
    for line in code.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith('#'):
            continue
        text = command_of(stripped)
        if text is None:
            if stripped.startswith('$'):
                raise SnippetFailed(f'{where}: not a manage.py command: {stripped!r}')
            expected.append(stripped)
            continue
        data: str | None = None
        for argv in _command_parts(text):
            data = run_command(argv, data)
        outputs.append(data or '')
    if option == 'output':
        actual = '\n'.join(outputs)
        for line in expected:
            pattern = '.+?'.join(re.escape(part) for part in re.split(r'<[^>]*>', line))
            if not re.search(pattern, actual):
                raise SnippetFailed(f'{where}: expected output line not printed: {line!r}\nactual:\n{actual}')


def main(page: str) -> int:
    from tests.docs.snippets import parse

    path = (Path.cwd() / page).resolve()
    snippets = [s for s in parse(path) if s.action == 'run' and s.option != 'settings']
    with tempfile.TemporaryDirectory(prefix='dj_cqrs_docs_') as sandbox:
        setup(Path(sandbox))
        namespace: dict[str, Any] = {'__name__': MODELS_MODULE}
        for snippet in snippets:
            try:
                if snippet.is_python:
                    run_python(snippet.code, namespace, snippet.where)
                elif snippet.is_shell:
                    run_shell(snippet.code, snippet.option, snippet.where)
                else:
                    raise SnippetFailed(f'{snippet.where}: cannot run a {snippet.lang!r} block')
            except BaseException:
                print(f'FAILED {snippet.where}\n{snippet.code}', flush=True)
                traceback.print_exc()
                return 1
            print(f'ok {snippet.where}', flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1]))
