"""``manage.py check`` on a throwaway project: every problem listed at once, each with its hint; a
correct project passes; nothing is validated at import time (ARCHITECTURE §4)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PYTHON = REPO / '.venv' / 'bin' / 'python'
if not PYTHON.exists():  # pragma: no cover - e.g. a CI job that runs in its own environment
    PYTHON = Path(sys.executable)

GOOD_CQRS = {'transport': 'dj_cqrs.transport.mock.TransportMock', 'queue': 'replica'}

# Problems that coexist: each is reported on its own, with its own id.
BROKEN_CQRS = {
    'transport': 'dj_cqrs.transport.nope.Transport',
    'queue': 123,
    'unknown_key': 1,
    'master': {
        'meta_function': 'cqrsapp.meta.no_kwargs',
        'CQRS_AUTO_UPDATE_FIELDS': 'yes',
        'CQRS_MESSAGE_TTL': 0,
    },
    'replica': {'CQRS_MAX_RETRIES': 'many', 'CQRS_RETRY_DELAY': None},
}
BROKEN_IDS = {
    'dj_cqrs.E004': "CQRS transport 'dj_cqrs.transport.nope.Transport' can't be imported: "
    "No module named 'dj_cqrs.transport.nope'.",
    'dj_cqrs.E007': 'CQRS master CQRS_AUTO_UPDATE_FIELDS must be bool.',
    'dj_cqrs.E011': 'CQRS master meta_function must support **kwargs.',
    'dj_cqrs.E013': 'CQRS queue must be string.',
    'dj_cqrs.W001': 'Settings CQRS_MESSAGE_TTL=0 is invalid, using default 86400.',
    'dj_cqrs.W002': 'Replica setting CQRS_MAX_RETRIES=many is invalid, using default 30.',
    'dj_cqrs.W003': 'Replica setting CQRS_RETRY_DELAY=None is invalid, using default 2.',
    'dj_cqrs.W009': 'Unknown CQRS setting(s): unknown_key.',
}

GOOD_MODELS = """
from django.db import models
from dj_cqrs.mixins import MasterMixin, ReplicaMixin


class Item(MasterMixin):
    CQRS_ID = 'item'
    name = models.CharField(max_length=10)


class ItemReplica(ReplicaMixin):
    CQRS_ID = 'item'
    id = models.IntegerField(primary_key=True)
    name = models.CharField(max_length=10)
"""

BROKEN_MODELS = """
from django.db import models
from dj_cqrs.mixins import MasterMixin, ReplicaMixin


class Item(MasterMixin):
    CQRS_ID = 'item'
    CQRS_FIELDS = ('name',)
    CQRS_TRACKED_FIELDS = ['name', 'nope']
    name = models.CharField(max_length=10)


class OtherItem(MasterMixin):
    CQRS_ID = 'item'
    name = models.CharField(max_length=10)


class NoIdItem(MasterMixin):
    CQRS_SERIALIZER = 'cqrsapp.serializers.Missing'
    name = models.CharField(max_length=10)


class ItemReplica(ReplicaMixin):
    CQRS_ID = 'item'
    CQRS_MAPPING = {'name': 'name'}
    id = models.IntegerField(primary_key=True)
    name = models.CharField(max_length=10)
"""
BROKEN_MODEL_IDS = {
    'dj_cqrs.E105': ('cqrsapp.Item', 'CQRS_TRACKED_FIELDS field is not correctly set for model Item.'),
    'dj_cqrs.E108': ('cqrsapp.Item', 'PK is not in CQRS_FIELDS for model Item.'),
    'dj_cqrs.E102': ('cqrsapp.OtherItem', "Two models can't have the same CQRS_ID: item."),
    'dj_cqrs.E101': ('cqrsapp.NoIdItem', 'CQRS_ID must be set for every model, that uses CQRS.'),
    'dj_cqrs.E110': (
        'cqrsapp.NoIdItem',
        "Model <class 'cqrsapp.models.NoIdItem'>: CQRS_SERIALIZER can't be imported.",
    ),
    'dj_cqrs.E112': ('cqrsapp.ItemReplica', 'PK is not in CQRS_MAPPING for model ItemReplica.'),
}

META = """
def no_kwargs(obj):
    return {}


def with_kwargs(obj, **kwargs):
    return {'pk': obj.pk}
"""

MANAGE = """
import os
import sys

if __name__ == '__main__':
    os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'cqrsproj_settings')
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
"""


def write_project(root: Path, cqrs: object, models: str = GOOD_MODELS) -> Path:
    app = root / 'cqrsapp'
    app.mkdir(parents=True)
    (app / '__init__.py').write_text('')
    (app / 'models.py').write_text(models)
    (app / 'meta.py').write_text(META)
    (root / 'manage.py').write_text(MANAGE)
    (root / 'cqrsproj_settings.py').write_text(
        textwrap.dedent(
            f"""
            SECRET_KEY = 'check-command-test'
            USE_TZ = True
            INSTALLED_APPS = ['dj_cqrs', 'cqrsapp']
            DATABASES = {{'default': {{'ENGINE': 'django.db.backends.sqlite3', 'NAME': {str(root / 'db.sqlite3')!r}}}}}
            DEFAULT_AUTO_FIELD = 'django.db.models.AutoField'
            CQRS = {cqrs!r}
            """
        )
    )
    return root


def run(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(('DJANGO_', 'PYTHON'))}
    env['DJANGO_SETTINGS_MODULE'] = 'cqrsproj_settings'
    env['PYTHONPATH'] = str(root)
    return subprocess.run(
        [str(PYTHON), *args], cwd=root, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def reported(output: str) -> dict[str, tuple[str, str, str]]:
    """``{id: (object, message, hint)}`` from Django's check output."""
    found = {}
    pattern = re.compile(
        r'^(?P<obj>\S+): \((?P<id>dj_cqrs\.[EW]\d{3})\) (?P<msg>.*)\n\tHINT: (?P<hint>.*)$', re.M
    )
    for match in pattern.finditer(output):
        found[match['id']] = (match['obj'], match['msg'], match['hint'])
    return found


def test_check_lists_every_settings_problem_with_its_hint(tmp_path):
    root = write_project(tmp_path, BROKEN_CQRS)
    result = run(root, 'manage.py', 'check')
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert 'SystemCheckError' in output
    found = reported(output)
    assert set(found) == set(BROKEN_IDS), output
    for id_, message in BROKEN_IDS.items():
        obj, msg, hint = found[id_]
        assert obj == '?'
        assert msg == message
        assert hint.strip()
    # Every problem is counted: Django prints "System check identified N issues".
    assert f'System check identified {len(BROKEN_IDS)} issues (0 silenced).' in output


def test_check_lists_every_model_problem_with_its_hint(tmp_path):
    root = write_project(tmp_path, GOOD_CQRS, models=BROKEN_MODELS)
    result = run(root, 'manage.py', 'check')
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    found = reported(output)
    assert set(found) == set(BROKEN_MODEL_IDS), output
    for id_, (obj, message) in BROKEN_MODEL_IDS.items():
        assert found[id_][0] == obj
        assert found[id_][1] == message
        assert found[id_][2].strip()


def test_check_passes_on_a_correct_project(tmp_path):
    root = write_project(tmp_path, GOOD_CQRS)
    result = run(root, 'manage.py', 'check')
    assert result.returncode == 0, result.stdout + result.stderr
    assert 'System check identified no issues (0 silenced).' in result.stdout
    assert 'dj_cqrs.' not in result.stdout + result.stderr


def test_check_passes_with_a_full_rabbitmq_configuration(tmp_path):
    cqrs = {
        'transport': 'dj_cqrs.transport.RabbitMQTransport',
        'url': 'amqp://guest:guest@localhost:5672/%2F',
        'queue': 'replica',
        'master': {
            'CQRS_AUTO_UPDATE_FIELDS': True,
            'CQRS_MESSAGE_TTL': 3600,
            'meta_function': 'cqrsapp.meta.with_kwargs',
        },
        'replica': {'CQRS_MAX_RETRIES': 5, 'CQRS_RETRY_DELAY': 1, 'delay_queue_max_size': None},
    }
    root = write_project(tmp_path, cqrs)
    result = run(root, 'manage.py', 'check')
    assert result.returncode == 0, result.stdout + result.stderr
    assert 'System check identified no issues (0 silenced).' in result.stdout


def test_warnings_alone_do_not_fail_check(tmp_path):
    root = write_project(tmp_path, {**GOOD_CQRS, 'unknown_key': 1, 'replica': {'CQRS_MAX_RETRIES': -1}})
    result = run(root, 'manage.py', 'check')
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert set(reported(output)) == {'dj_cqrs.W002', 'dj_cqrs.W009'}


IMPORT_SCRIPT = """
import django
django.setup()
import cqrsapp.models
from django.conf import settings
from dj_cqrs import transport
from dj_cqrs.conf import cqrs_settings
assert transport.current_transport is None, transport.current_transport
cqrs_settings.master
cqrs_settings.replica
print('imported', sorted(settings.CQRS) if isinstance(settings.CQRS, dict) else settings.CQRS)
"""


@pytest.mark.parametrize(
    ('cqrs', 'models'),
    [(BROKEN_CQRS, GOOD_MODELS), (BROKEN_CQRS, BROKEN_MODELS), ('not-a-dict', BROKEN_MODELS)],
    ids=['broken-settings', 'broken-settings-and-models', 'settings-not-a-dict'],
)
def test_nothing_is_validated_at_import_time(tmp_path, cqrs, models):
    root = write_project(tmp_path, cqrs, models=models)
    result = run(root, '-c', IMPORT_SCRIPT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith('imported')
    assert 'Traceback' not in result.stderr


def test_check_database_warns_about_the_outbox_table_then_passes_after_migrate(tmp_path):
    root = write_project(tmp_path, GOOD_CQRS)
    before = run(root, 'manage.py', 'check', '--database', 'default')
    output = before.stdout + before.stderr
    assert before.returncode == 0, output  # a warning: it must not stop migrate
    found = reported(output)
    assert set(found) == {'dj_cqrs.W021'}
    assert found['dj_cqrs.W021'][2] == 'Run `manage.py migrate dj_cqrs --database default`.'
    migrated = run(root, 'manage.py', 'migrate')
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    after = run(root, 'manage.py', 'check', '--database', 'default')
    assert after.returncode == 0, after.stdout + after.stderr
    assert not reported(after.stdout + after.stderr)


def test_cqrs_consume_refuses_to_start_without_the_tables(tmp_path):
    root = write_project(tmp_path, GOOD_CQRS)
    result = run(root, 'manage.py', 'cqrs_consume')
    assert result.returncode == 1
    assert (
        "CommandError: The dj_cqrs tables are missing in database 'default'. "
        'Run `manage.py migrate dj_cqrs --database default`.'
    ) in result.stderr


def test_migrate_works_on_a_fresh_database(tmp_path):
    root = write_project(tmp_path, GOOD_CQRS)
    result = run(root, 'manage.py', 'migrate', 'dj_cqrs')
    assert result.returncode == 0, result.stdout + result.stderr
