"""What the web demo's server keeps per request, counted inside it: Gradio 6.17's queue keeps a record of every
request it served (the request and its payload, its task, an analytics row) and every session's component values
(10000 sessions by default); the demo drops the records of finished requests and keeps the sessions of its queue
only. Also: the warning printed when the page is served beyond this machine."""
import importlib.util
import time
from types import ModuleType

import gradio as gr
import pytest

from ..test_tools.conftest import free_port
from .conftest import REPO_ROOT
from .gradio_http import client, fn_index, run_event, upload

MAX_QUEUE = 3
REQUESTS = 12  # more than the sessions kept (2 x MAX_QUEUE)


@pytest.fixture(scope='module')
def gradio_demo() -> ModuleType:
    """``demo/gradio_demo.py`` as a module (the demo folder is not a package)."""
    spec = importlib.util.spec_from_file_location('gradio_demo', REPO_ROOT / 'demo' / 'gradio_demo.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_finished_requests_leave_no_records(gradio_demo, toy_demo_model, tmp_path, monkeypatch):
    from fiber_mmdet.apis import FIBERInferencer
    monkeypatch.setenv('GRADIO_TEMP_DIR', str(tmp_path / 'gradio_cache'))
    args = gradio_demo.parse_args([toy_demo_model.config, toy_demo_model.checkpoint, '--port', str(free_port()),
                                   '--max-queue', str(MAX_QUEUE)])
    inferencer = FIBERInferencer(model=args.config, weights=args.checkpoint, device='cpu', show_progress=False)
    page = gradio_demo.build_page(gradio_demo.GroundingDemo(inferencer), max_queue=args.max_queue)
    app, _, _ = gradio_demo.launch(page, args, prevent_thread_lock=True, quiet=True)
    try:
        url, queue = f'http://127.0.0.1:{args.port}', page._queue
        with client() as http:
            index = fn_index(http, url, 'detect')
            for i in range(REQUESTS):  # each in its own session, as from as many pages
                record = upload(http, url, toy_demo_model.image)
                assert run_event(http, url, index, [record, 'classes', 'circle', '', 0.0]).success
        deadline = time.monotonic() + 3 * gradio_demo.FORGET_EVENTS_EVERY_S
        while queue.event_ids_to_events and time.monotonic() < deadline:
            time.sleep(0.2)
        kept = dict(requests=len(queue.event_ids_to_events), analytics=len(queue.event_analytics),
                    sessions_owed_results=len(queue.pending_event_ids_session),
                    finished_tasks=sum(task.done() for task in queue._asyncio_tasks))
        assert kept == dict(requests=0, analytics=0, sessions_owed_results=0, finished_tasks=0), kept
        assert len(app.state_holder.session_data) <= 2 * MAX_QUEUE < REQUESTS
    finally:
        page.close()


def test_another_gradio_queue_is_named(gradio_demo):
    queue = gr.Blocks().queue()._queue
    gradio_demo.check_queue_records(queue)  # this Gradio's queue has every record the demo drops
    del queue.event_analytics
    with pytest.raises(RuntimeError, match=r'gradio .*: its queue has no event_analytics; .*QUEUE_RECORDS'):
        gradio_demo.check_queue_records(queue)


@pytest.mark.parametrize('host, reachable', [
    ('127.0.0.1', False), ('localhost', False), ('::1', False), ('127.0.0.2', False),
    ('0.0.0.0', True), ('::', True), ('192.168.1.20', True), ('my-workstation', True)])
def test_a_host_beyond_this_machine_is_warned_about(gradio_demo, host, reachable):
    warning = gradio_demo.network_warning(host, 7860)
    if reachable:
        assert warning.startswith(f'WARNING: serving on {host}:7860: the page is reachable from the network')
    else:
        assert warning is None
