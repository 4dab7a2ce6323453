"""The reference pages cover every command flag, every ``CQRS`` key and every check id."""

from __future__ import annotations

import re

import pytest
from django.core.management import get_commands, load_command_class
from django.core.management.base import BaseCommand

from dj_cqrs import conf
from tests.docs.snippets import DOCS, REPO

COMMANDS = sorted(
    name for name, app in get_commands().items() if app == 'dj_cqrs' and name.startswith('cqrs_')
)
STANDARD = {action.dest for action in BaseCommand().create_parser('manage.py', 'x')._actions}


def _section(page: str, heading: str) -> str:
    text = (DOCS / page).read_text()
    match = re.search(rf'^## {re.escape(heading)}\n(.*?)(?=^## |\Z)', text, re.M | re.S)
    assert match, f'docs/{page} has no "## {heading}" section'
    return match.group(1)


def test_the_commands_are_found() -> None:
    assert {'cqrs_consume', 'cqrs_relay', 'cqrs_status', 'cqrs_dead_letters', 'cqrs_sync'} <= set(COMMANDS)


@pytest.mark.parametrize('name', COMMANDS)
def test_every_flag_of_every_command_is_documented(name: str) -> None:
    section = _section('commands.md', name)
    parser = load_command_class('dj_cqrs', name).create_parser('manage.py', name)
    for action in parser._actions:
        if action.dest in STANDARD:
            continue
        for option in action.option_strings:
            assert f'`{option}`' in section, f'{name}: {option} is not in docs/commands.md'
        for choice in action.choices or ():
            assert f'`{choice}`' in section, f'{name}: {action.dest} choice {choice!r} is not documented'
        if not action.option_strings and not action.choices:
            assert f'`{action.dest}`' in section, f'{name}: argument {action.dest} is not documented'


def _settings_keys() -> set[str]:
    source = (REPO / 'src' / 'dj_cqrs' / 'conf.py').read_text()
    read = set(re.findall(r"section\.get\('([A-Za-z_]+)'", source))
    return set(conf.TOP_LEVEL_KEYS) | set(conf.MASTER_KEYS) | set(conf.REPLICA_KEYS) | read


def test_every_setting_is_documented() -> None:
    text = (DOCS / 'settings.md').read_text()
    missing = sorted(key for key in _settings_keys() if f'`{key}`' not in text)
    assert not missing, f'settings missing from docs/settings.md: {missing}'


def _check_ids() -> set[str]:
    source = (REPO / 'src' / 'dj_cqrs' / 'checks.py').read_text()
    ids = {f'E{int(n):03d}' for n in re.findall(r'_error\(\s*(\d+)', source)}
    ids |= {f'W{int(n):03d}' for n in re.findall(r'_warning\(\s*(\d+)', source)}
    return ids


def test_every_check_id_is_documented() -> None:
    ids = _check_ids()
    assert len(ids) > 40
    troubleshooting = (DOCS / 'troubleshooting.md').read_text()
    settings = (DOCS / 'settings.md').read_text()
    missing = sorted(i for i in ids if f'dj_cqrs.{i}' not in troubleshooting)
    assert not missing, f'check ids missing from docs/troubleshooting.md: {missing}'
    missing = sorted(i for i in ids if f'`{i}`' not in settings)
    assert not missing, f'check ids missing from docs/settings.md: {missing}'
