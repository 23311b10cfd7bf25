"""Nothing one execution writes, spawns, imports or changes is visible to the next one in the same warm
sandbox (the service has one, so both executions run in it: they report the same uid)."""

from __future__ import annotations

PLANT = """
import builtins, ctypes, json, os, sys
with open('/tmp/planted.txt', 'w') as f:
    f.write('for the next one')
with open('/tmp/evil.py', 'w') as f:
    f.write('HIJACKED = True')
os.makedirs('/tmp/pkg/locked')
with open('/tmp/pkg/locked/file', 'w') as f:
    f.write('x')
os.chmod('/tmp/pkg/locked', 0)
os.chmod('/tmp/pkg', 0)
with open('/dev/shm/planted', 'w') as f:
    f.write('x')
queue = ctypes.CDLL(None).mq_open(b'/planted', os.O_CREAT | os.O_RDWR, 0o600, None)  # POSIX
sys.modules['math'] = json
builtins.PLANTED = True
json.POISONED = True
os.environ['PLANTED'] = '1'
print(ctypes.CDLL(None).shmget(4242, 4096, 0o1666) == -1, queue >= 0, os.getuid())  # SysV: refused
"""

CHECK = """
import builtins, json, math, os
print(os.getuid())
print(sorted(os.listdir('/tmp')), os.listdir('/dev/shm'), os.listdir('/dev/mqueue'))
print(hasattr(builtins, 'PLANTED'), hasattr(json, 'POISONED'), math.sqrt(4), 'PLANTED' in os.environ)
with open('/proc/sysvipc/shm') as f:
    print(len(f.read().splitlines()))
try:
    import evil
    print('imported', evil)
except ModuleNotFoundError:
    print('no evil')
"""


def test_planted_files_modules_and_state_do_not_reach_the_next_execution(service):
    planted = service.call("execute", PLANT)
    refused, queued, uid = planted.stdout.split()
    assert refused == queued == "True", planted

    check = service.call("execute", CHECK).stdout.splitlines()
    assert check[0] == uid  # the same warm sandbox served both
    assert check[1:] == ["['main.py'] [] []", "False False 2.0 False", "1", "no evil"]


def test_supplied_files_sit_beside_the_program_and_are_importable(service):
    code = "import helper\nprint(helper.GREETING, open('data/input.txt').read())\n"
    files = {"helper.py": "GREETING = 'hi'", "data/input.txt": "from a file"}
    result = service.call("execute", code, files=files)
    assert result.stdout == "hi from a file\n"
    assert service.call("execute", "import os\nprint(sorted(os.listdir('.')))").stdout == "['main.py']\n"


def test_modules_the_warm_interpreter_leaves_out_still_import(service):
    code = "import dataclasses, random, statistics\nprint(statistics.mean([random.choice([2]), 4]))\n"
    assert service.call("execute", code).stdout == "3\n"


def test_an_uncaught_exception_goes_through_the_programs_excepthook(service):
    code = "import sys\nsys.excepthook = lambda kind, *_: print('hooked', kind.__name__)\n1 / 0\n"
    result = service.call("execute", code)
    assert (result.stdout, result.exit_code) == ("hooked ZeroDivisionError\n", 1)
