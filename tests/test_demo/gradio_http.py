"""A small HTTP client of the web demo that speaks Gradio's own protocol (what the page's JavaScript does): upload a
file, join the queue, read every message of the event stream (queue position, progress, result or error).

The messages are kept whole, so that a test can check what a colleague waiting in the queue is shown."""
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import httpx

API = '/gradio_api'
TIMEOUT_S = 120


def client() -> httpx.Client:
    """An HTTP client that never goes through a proxy (the demo under test listens on 127.0.0.1)."""
    return httpx.Client(trust_env=False, timeout=TIMEOUT_S)


@dataclass
class EventResult:
    """Everything the server sent for one request, in order, and its outcome."""
    messages: List[Dict[str, Any]] = field(default_factory=list)

    @property
    def completed(self) -> Dict[str, Any]:
        [done] = [m for m in self.messages if m['msg'] == 'process_completed']
        return done

    @property
    def success(self) -> bool:
        return bool(self.completed['success'])

    @property
    def data(self) -> List[Any]:
        """The outputs (picture record, table, status line) of a successful request."""
        assert self.success, self.error
        return self.completed['output']['data']

    @property
    def error(self) -> Optional[str]:
        return None if self.success else str(self.completed['output'].get('error'))

    @property
    def ranks(self) -> List[int]:
        """Queue positions the server announced (0: next to run)."""
        return [m['rank'] for m in self.messages if m['msg'] == 'estimation' and m.get('rank') is not None]

    @property
    def progress(self) -> List[str]:
        """Descriptions of the progress steps the server announced."""
        return [unit.get('desc') for m in self.messages if m['msg'] == 'progress'
                for unit in m.get('progress_data') or []]


def fn_index(http: httpx.Client, base_url: str, api_name: str) -> int:
    """The id of the event whose ``api_name`` is given, from the page's config."""
    config = http.get(f'{base_url}/config').json()
    ids = [dep['id'] for dep in config['dependencies'] if dep.get('api_name') == api_name]
    assert len(ids) == 1, [dep.get('api_name') for dep in config['dependencies']]
    return ids[0]


def upload(http: httpx.Client, base_url: str, path: str) -> Dict[str, Any]:
    """Upload ``path`` as the page does; returns the file record the page then sends with its request."""
    with open(path, 'rb') as f:
        response = http.post(f'{base_url}{API}/upload', files={'files': (Path(path).name, f)})
    response.raise_for_status()
    [server_path] = response.json()
    return dict(path=server_path, orig_name=Path(path).name, meta={'_type': 'gradio.FileData'})


def join_queue(http: httpx.Client, base_url: str, index: int, data: List[Any]) -> Tuple[str, httpx.Response]:
    """Ask the server to queue event ``index`` with ``data`` under a new session; returns the session and the
    server's answer (200, or e.g. 503 when the queue is full)."""
    session = uuid.uuid4().hex
    response = http.post(f'{base_url}{API}/queue/join',
                         json=dict(data=data, fn_index=index, session_hash=session, event_data=None, trigger_id=None))
    return session, response


def read_events(http: httpx.Client, base_url: str, session: str) -> EventResult:
    """Read the event stream of ``session`` to the end of its request."""
    result = EventResult()
    with http.stream('GET', f'{base_url}{API}/queue/data', params=dict(session_hash=session)) as stream:
        for line in stream.iter_lines():
            if not line.startswith('data:'):
                continue
            message = json.loads(line[len('data:'):])
            if message['msg'] == 'heartbeat':
                continue
            result.messages.append(message)
            if message['msg'] in ('process_completed', 'close_stream', 'unexpected_error'):
                break
    assert any(m['msg'] == 'process_completed' for m in result.messages), result.messages
    return result


def run_event(http: httpx.Client, base_url: str, index: int, data: List[Any]) -> EventResult:
    """Join the queue with ``data`` and read the event stream to its end.

    Raises:
        httpx.HTTPStatusError: the server refused to queue the request (e.g. 503: the queue is full).
    """
    session, joined = join_queue(http, base_url, index, data)
    joined.raise_for_status()
    return read_events(http, base_url, session)
