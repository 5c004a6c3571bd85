"""The README and docs/ stay true to the software.

Every config, tool, image, page and ``make`` target they name exists; every ``tools/`` and ``demo/`` Python
command they show answers ``--help``, with the options they show; shell scripts parse; links between pages
resolve, anchors included; the README stays short; the pages speak of the software, not of how it was made; the
registry table lists exactly what the code registers; the README and docs/ sections that error messages point to
exist.
"""
import ast
import itertools
import json
import re
import subprocess
import sys
from functools import lru_cache
from pathlib import Path
from typing import Dict, Iterator, List, Set, Tuple

import pytest

REPO = Path(__file__).resolve().parents[2]
README = REPO / 'README.md'
PAGES = [README] + sorted((REPO / 'docs').rglob('*.md'))
README_MAX_LINES = 250

# repository paths the pages may name; data/, work_dirs/, checkpoints/ and outputs/ are what the user makes
PATH_RE = re.compile(r'(?<![\w./$<{-])((?:configs|tools|demo|docs|tests|fiber_mmdet)/'
                     r'(?:\{[^}\s]*\}|[\w./<>*+-])*(?:\{[^}\s]*\}|[\w>*]))')
TOOL_RE = re.compile(r'(?<![\w./$-])((?:tools|demo)/[\w./-]*\.(?:py|sh))\b')
LINK_RE = re.compile(r'!?\[[^\]]*\]\(([^)\s]+)\)')
FENCE_RE = re.compile(r'^```[^\n]*\n(.*?)^```', re.S | re.M)
INLINE_RE = re.compile(r'`([^`\n]+)`')
MAKE_RE = re.compile(r'(?<![\w-])make\s+([a-z][\w-]*)')
HINT_RE = re.compile(r'(README\.md|docs/[\w/]+\.md), section "([^"]+)"')

# The pages describe the software. How, when or on what it was developed is not part of it.
FORBIDDEN = [
    r'\bsessions?\b', r'this machine', r'\blent\b', r'2-core', r'work periods?', r'\bhelpers?\b',
    r'development machine', r'not in the repository', r'clean clone', r'quiet (?:machine|hour)',
    r'loaded machine', r'this task', r'spec §', r'\bgotcha', r'this CPU', r'toy (?:data(?:set)? )?version \d',
    r'no GPU was', r"the issue's",
]
# issue numbers are allowed only when they are the original repository's
ISSUE_RE = re.compile(r'\bissues?\s+#?\d+|(?<![\w/&])#\d+\b', re.I)


def text(page: Path) -> str:
    return page.read_text(encoding='utf-8')


def rel(page: Path) -> str:
    return str(page.relative_to(REPO))


def code_of(page_text: str) -> List[str]:
    """The fenced blocks (continuation lines joined) and inline code spans of a page."""
    blocks = [b.replace('\\\n', ' ') for b in FENCE_RE.findall(page_text)]
    prose = FENCE_RE.sub('', page_text)
    return blocks + INLINE_RE.findall(prose)


def expand(pattern: str) -> List[str]:
    """``a{,_b}c`` -> ``['ac', 'a_bc']``; ``<name>`` becomes a glob ``*``."""
    pattern = re.sub(r'<[^>]+>', '*', pattern)
    parts = re.split(r'(\{[^}]*\})', pattern)
    choices = [p[1:-1].split(',') if p.startswith('{') else [p] for p in parts]
    return [''.join(c) for c in itertools.product(*choices)]


def exists(path: str) -> bool:
    return any(REPO.glob(path)) if '*' in path else (REPO / path).exists()


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, link text only, punctuation but '-' and '_' dropped."""
    heading = re.sub(r'\[([^\]]*)\]\([^)]*\)', r'\1', heading.strip().lower())
    return re.sub(r'[^\w\- ]', '', heading).replace(' ', '-')


def anchors(page: Path) -> Set[str]:
    body = FENCE_RE.sub('', text(page))
    return {slug(h) for h in re.findall(r'^#{1,6}\s+(.+?)\s*$', body, re.M)}


def headings(page: Path) -> Set[str]:
    return set(re.findall(r'^#{1,6}\s+(.+?)\s*$', FENCE_RE.sub('', text(page)), re.M))


def named_tools() -> Dict[str, Set[str]]:
    """Each ``tools/`` / ``demo/`` script the pages name -> the ``--options`` the pages show with it."""
    tools: Dict[str, Set[str]] = {}
    for page in PAGES:
        page_text = text(page)
        for tool in TOOL_RE.findall(page_text):
            tools.setdefault(tool, set())
        for code in code_of(page_text):
            for line in code.split('\n'):
                found = list(TOOL_RE.finditer(line))
                for i, match in enumerate(found):
                    end = found[i + 1].start() if i + 1 < len(found) else len(line)
                    args = line[match.end():end].split('#')[0]
                    options = re.findall(r'(?<![\w-])(--[a-z][\w-]*)', args)
                    tools[match.group(1)].update(options)
    return tools


@lru_cache(maxsize=1)
def help_outputs() -> Dict[str, Dict[str, object]]:
    """``--help`` of every Python tool the pages name, run in subprocesses (see ``run_help.py``)."""
    python_tools = sorted(t for t in named_tools() if t.endswith('.py') and (REPO / t).is_file())
    proc = subprocess.run([sys.executable, str(Path(__file__).with_name('run_help.py')), *python_tools],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def test_readme_is_short():
    lines = text(README).count('\n')
    assert lines <= README_MAX_LINES, f'README.md has {lines} lines; the depth belongs in docs/'


def test_named_paths_exist():
    missing = []
    for page in PAGES:
        for path in set(PATH_RE.findall(text(page))):
            if not any(exists(p) for p in expand(path)):
                missing.append(f'{rel(page)}: {path}')
    assert not missing, 'named but not in the repository:\n' + '\n'.join(sorted(missing))


def test_links_and_images_resolve():
    broken = []
    for page in PAGES:
        for target in LINK_RE.findall(FENCE_RE.sub('', text(page))):
            if re.match(r'[a-z]+:', target):
                continue  # an external address
            path, _, anchor = target.partition('#')
            dest = (page.parent / path).resolve() if path else page
            if not dest.exists():
                broken.append(f'{rel(page)}: {target} (no such file)')
            elif anchor and dest.suffix == '.md' and anchor not in anchors(dest):
                broken.append(f'{rel(page)}: {target} (no heading #{anchor} in {dest.name})')
    assert not broken, 'broken links:\n' + '\n'.join(broken)


def test_make_targets_exist():
    targets = set(re.findall(r'^([\w-]+):', (REPO / 'Makefile').read_text(), re.M))
    unknown = [f'{rel(page)}: make {t}' for page in PAGES for code in code_of(text(page))
               for t in MAKE_RE.findall(code) if t not in targets]
    assert not unknown, f'not a Makefile target ({sorted(targets)}):\n' + '\n'.join(unknown)


def test_shell_scripts_exist_and_parse():
    scripts = sorted(t for t in named_tools() if t.endswith('.sh'))
    assert scripts, 'the pages name no shell script: the pattern is broken'
    for script in scripts:
        assert (REPO / script).is_file(), f'{script} is named in the docs but does not exist'
        proc = subprocess.run(['bash', '-n', str(REPO / script)], capture_output=True, text=True, timeout=30)
        assert proc.returncode == 0, f'{script}: {proc.stderr}'


def test_python_tools_answer_help_with_the_options_shown():
    tools = named_tools()
    python_tools = sorted(t for t in tools if t.endswith('.py'))
    assert 'tools/test.py' in python_tools and 'demo/image_demo.py' in python_tools, python_tools
    missing = [t for t in python_tools if not (REPO / t).is_file()]
    assert not missing, f'named in the docs but missing: {missing}'
    failures = []
    for tool, result in help_outputs().items():
        out = str(result['out'])
        if result['rc'] != 0 or 'usage:' not in out:
            failures.append(f'{tool} --help: exit status {result["rc"]}\n{out[-1500:]}')
            continue
        unknown = sorted(o for o in tools[tool] if o not in out)
        if unknown:
            failures.append(f'{tool}: the docs show {unknown}, which --help does not list')
    assert not failures, '\n\n'.join(failures)


@pytest.mark.parametrize('page', PAGES, ids=rel)
def test_pages_speak_of_the_software_only(page):
    page_text = text(page)
    found = [(m.group(), page_text.count('\n', 0, m.start()) + 1)
             for pattern in FORBIDDEN for m in re.finditer(pattern, page_text, re.I)]
    for m in ISSUE_RE.finditer(page_text):
        if 'microsoft/FIBER' not in page_text[max(0, m.start() - 120):m.start()]:
            found.append((m.group(), page_text.count('\n', 0, m.start()) + 1))
    assert not found, f'{rel(page)}: ' + ', '.join(f'{w!r} (line {n})' for w, n in found)


def registered_names() -> Dict[str, str]:
    """Class name -> registry, from the ``@REGISTRY.register_module()`` decorators under fiber_mmdet/."""
    names = {}
    for path in (REPO / 'fiber_mmdet').rglob('*.py'):
        for node in ast.walk(ast.parse(path.read_text(encoding='utf-8'))):
            if isinstance(node, ast.ClassDef):
                for decorator in node.decorator_list:
                    call = ast.unparse(decorator)
                    if '.register_module(' in call:
                        names[node.name] = call.split('.register_module(')[0]
    return names


def documented_names(page: Path) -> Iterator[Tuple[str, str]]:
    """(registry, name) of each row of the "Registry names" table."""
    section = text(page).split('## Registry names', 1)[1].split('\n## ', 1)[0]
    for row in re.findall(r'^\| *([A-Z_]+) *\| *([^|]+)\|', section, re.M):
        for name in re.findall(r'`(\w+)`', row[1]):
            yield row[0], name


def test_registry_table_lists_what_the_code_registers():
    code = registered_names()
    assert 'FIBER' in code and code['FIBER'] == 'MODELS', code
    docs = dict((name, registry) for registry, name in documented_names(REPO / 'docs' / 'use_in_your_project.md'))
    assert set(docs) == set(code), (f'registered but not documented: {sorted(set(code) - set(docs))}; '
                                    f'documented but not registered: {sorted(set(docs) - set(code))}')
    wrong = {n: (docs[n], code[n]) for n in code if docs[n] != code[n]}
    assert not wrong, f'registry in the docs vs the code: {wrong}'


def test_sections_named_by_error_messages_exist():
    """Missing-file errors say where a file comes from as 'README.md, section "..."' or 'docs/<page>.md, section
    "..."'; that page has that section."""
    hints = set()
    for folder in ('configs', 'fiber_mmdet', 'tools'):
        for path in (REPO / folder).rglob('*.py'):
            hints.update(HINT_RE.findall(path.read_text(encoding='utf-8')))
    pages = {page for page, _ in hints}
    assert 'README.md' in pages and 'docs/datasets.md' in pages, f'section hints found only for {pages}'
    missing = [f'{page}: "{section}"' for page, section in sorted(hints)
               if not (REPO / page).is_file() or section not in headings(REPO / page)]
    assert not missing, 'error messages point to sections that do not exist:\n' + '\n'.join(missing)
