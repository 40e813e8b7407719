"""Protocol v1.1 behaviour: the session pool, blobs by reference, long jobs, key pinning."""

from __future__ import annotations

import concurrent.futures
import hashlib
import time
import urllib.error
import urllib.request

import pytest

from wasm_hypervisor import Client, Job, KeyMismatchError, Mount, RequestError

from test_run import tar_of


def test_v1_1_opens_sessions_in_signed_batches_and_reuses_them(server, examples):
    client = Client(server.url, batch=4)
    for _ in range(3):
        assert client.run(examples / "tiny.wasm").status == "completed"
    assert client.stats["session_requests"] == 1
    assert client.stats["sessions_opened"] == 4
    assert client.pooled_sessions == 1


def test_v1_opens_one_session_per_execution(server, examples):
    client = Client(server.url, wire="v1")
    for _ in range(3):
        assert client.run(examples / "tiny.wasm").status == "completed"
    assert client.stats["session_requests"] == 3
    assert client.stats["sessions_opened"] == 3
    assert client.pooled_sessions == 0


def test_threads_sharing_an_empty_pool_open_one_batch_between_them(server, examples):
    client = Client(server.url, batch=8)
    module = (examples / "tiny.wasm").read_bytes()
    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as workers:
        results = list(workers.map(lambda _: client.run(module), range(16)))
    assert [result.status for result in results] == ["completed"] * 16
    # A batch is only opened for an empty pool: sixteen runs, batches of 4, 8 and
    # 8 (each used up, so the next doubled, up to the ceiling of 8).
    assert client.stats["session_requests"] == 3
    assert client.stats["sessions_opened"] == 20
    assert client.pooled_sessions == 4


def test_pool_starts_with_a_small_batch_and_doubles_it_while_batches_are_used_up(server, examples):
    client = Client(server.url)
    module = (examples / "tiny.wasm").read_bytes()
    sizes = []
    for _ in range(4 + 8 + 16 + 1):
        opened = client.stats["sessions_opened"]
        assert client.run(module).status == "completed"
        if client.stats["sessions_opened"] != opened:
            sizes.append(client.stats["sessions_opened"] - opened)
    # Up to the default ceiling of 16.
    assert sizes == [4, 8, 16, 16]
    assert client.stats["session_requests"] == 4


def test_three_programs_on_one_address_share_its_pending_sessions_without_refusal(make_server, examples):
    # The server's default share: 64 pending sessions per client (address).
    server = make_server(WASM_HYPERVISOR_SESSIONS__MAX_PENDING_PER_CLIENT="64")
    module = (examples / "tiny.wasm").read_bytes()
    programs = [Client(server.url) for _ in range(3)]
    for _ in range(2):
        for program in programs:
            assert program.run(module).status == "completed"
    # Each asked once and was granted: no batch was refused for the share.
    assert [program.stats["session_requests"] for program in programs] == [1, 1, 1]
    assert [program.batch for program in programs] == [4, 4, 4]


def test_pool_halves_a_batch_the_clients_pending_share_refuses(make_server, examples):
    server = make_server(WASM_HYPERVISOR_SESSIONS__MAX_PENDING_PER_CLIENT="6")
    other = Client(server.url)  # another program of the same client
    assert other.run(examples / "tiny.wasm").status == "completed"
    assert other.pooled_sessions == 3  # three of its six held
    client = Client(server.url)
    for _ in range(4):
        assert client.run(examples / "tiny.wasm").status == "completed"
    # 4 refused (3 + 4 > 6), 2 granted; used up, so 4 asked again: refused, 2 granted.
    assert client.batch == 2
    assert client.stats["session_requests"] == 4
    assert client.stats["sessions_opened"] == 4


def _empty_the_bucket(url: str) -> None:
    """Requests ``/keys`` until the server answers 429 (this client's bucket is empty)."""
    while True:
        try:
            urllib.request.urlopen(url + "/keys").close()
        except urllib.error.HTTPError as error:
            if error.code == 429:
                return
            raise


def test_a_session_a_rate_limited_run_did_not_use_goes_back_to_the_pool(make_server, examples):
    server = make_server(
        WASM_HYPERVISOR_CLIENTS__REQUESTS_PER_SECOND="1", WASM_HYPERVISOR_CLIENTS__BURST="4"
    )
    client = Client(server.url, batch=8)
    module = (examples / "tiny.wasm").read_bytes()
    assert client.run(module).status == "completed"
    for _ in range(5):
        # Empty the client's bucket, then run at once (a token refilled in between
        # lets the run through: then again).
        _empty_the_bucket(server.url)
        before = client.pooled_sessions
        try:
            client.run(module)
        except RequestError as error:
            assert error.code == "rate_limited"
            break
    else:
        raise AssertionError("no run was ever rate limited")
    # Not used by the server, so not lost by the pool.
    assert client.pooled_sessions == before


def test_pool_retries_once_quietly_after_a_server_restart(make_server, examples):
    server = make_server()
    client = Client(server.url, batch=8)
    assert client.run(examples / "tiny.wasm").status == "completed"
    assert client.pooled_sessions == 3
    server.restart()  # same key, none of the pooled sessions
    result = client.run(examples / "tiny.wasm")
    assert result.status == "completed"
    assert client.stats["session_retries"] == 1
    assert client.stats["session_requests"] == 2
    client.verify(result.receipt)


def test_pool_retries_once_quietly_when_the_server_expired_a_pooled_session(make_server, examples):
    server = make_server(WASM_HYPERVISOR_SESSIONS__TTL_SECS="1")
    client = Client(server.url, batch=4, session_margin=0)
    assert client.run(examples / "tiny.wasm").status == "completed"
    expires_at = max(session.expires_at for session in client._pool.sessions)
    # A client whose clock is behind the server's still trusts its pooled sessions.
    for session in client._pool.sessions:
        session.expires_at = time.time() + 3600
    time.sleep(max(0.0, expires_at - time.time()) + 1.5)  # until the server has expired them
    assert client.run(examples / "tiny.wasm").status == "completed"
    assert client.stats["session_retries"] == 1
    assert client.stats["session_requests"] == 2


def test_pool_drops_sessions_that_expire_within_the_margin(make_server, examples):
    server = make_server(WASM_HYPERVISOR_SESSIONS__TTL_SECS="2")
    client = Client(server.url, batch=4, session_margin=5)
    for _ in range(2):
        assert client.run(examples / "tiny.wasm").status == "completed"
    # Every pooled session expires within 5 s: each run opened a batch of its own.
    assert client.stats["session_requests"] == 2
    assert client.stats["session_retries"] == 0


def test_pool_halves_its_batch_when_sessions_expired_unused(make_server, examples):
    server = make_server(WASM_HYPERVISOR_SESSIONS__TTL_SECS="2")
    client = Client(server.url, session_margin=5)
    for _ in range(4):
        assert client.run(examples / "tiny.wasm").status == "completed"
    # The other sessions of the batches of 4 and 2 were dropped unused, so each next
    # batch was halved; the batch of 1 was used up, so the next one doubled.
    assert client.stats["sessions_opened"] == 4 + 2 + 1 + 2
    assert client.batch == 2


def test_first_reference_on_a_fresh_server_falls_back_to_the_bytes(make_server, examples):
    server = make_server()
    client = Client(server.url, references="always")
    module = (examples / "files.wasm").read_bytes()
    archive = tar_of({"input.txt": b"by reference"})
    module_hash = hashlib.sha256(module).hexdigest()
    archive_hash = hashlib.sha256(archive).hexdigest()
    mounts = [Mount("/in", archive), Mount("/out", writable=True)]

    first = client.run(module, args=["selftest", "/in", "/out"], mounts=mounts)
    assert first.status == "completed"
    assert sorted(first.resent_blobs) == sorted([module_hash, archive_hash])
    assert first.sent_by_reference == []

    second = client.run(module, args=["selftest", "/in", "/out"], mounts=mounts)
    assert second.status == "completed"
    assert b"input.txt: by reference" in second.stdout
    assert second.resent_blobs == []
    assert sorted(second.sent_by_reference) == sorted([module_hash, archive_hash])


def test_auto_references_name_a_module_sent_before_and_resend_after_restart(make_server, examples):
    server = make_server()
    client = Client(server.url)
    module_hash = hashlib.sha256((examples / "hello.wasm").read_bytes()).hexdigest()
    assert client.run(examples / "hello.wasm").sent_by_reference == []
    assert client.run(examples / "hello.wasm").sent_by_reference == [module_hash]
    server.restart()  # blobs live in memory only
    again = client.run(examples / "hello.wasm")
    assert again.status == "completed"
    assert again.resent_blobs == [module_hash]


def test_v1_never_names_blobs(server, examples):
    client = Client(server.url, wire="v1", references="always")
    for _ in range(2):
        result = client.run(examples / "hello.wasm")
        assert result.sent_by_reference == [] and result.resent_blobs == []


@pytest.mark.parametrize("wire", ["v1.1", "v1"])
def test_async_job_is_accepted_then_polled_to_its_result(server, examples, wire):
    client = Client(server.url, wire=wire)
    job = client.submit(examples / "sleep.wasm", args=["300"])
    assert job.location == f"/executions/{job.execution_id}"
    result = client.result(job, timeout=60)
    assert result.status == "completed"
    assert result.stdout == b"slept\n"
    assert result.execution_id == job.execution_id
    assert job.done
    client.verify(result.receipt)


def test_a_pending_job_says_its_state_and_phase(server, examples):
    client = Client(server.url)
    job = client.submit(examples / "sleep.wasm", args=["3000"])
    assert (job.state, job.phase) == (None, None)
    result, wait = client.poll(job)
    # A guest that sleeps 3 s has not finished at once.
    assert result is None and wait == 1.0
    assert job.state in ("queued", "running")
    assert job.phase in ("queued", "compiling", "running")
    assert client.result(job, timeout=60).stdout == b"slept\n"


def test_a_phase_this_client_does_not_know_reads_as_none():
    from wasm_hypervisor._jobs import check_pending

    job = Job.__new__(Job)
    job.execution_id = "00000000-0000-4000-8000-000000000000"
    for body, seen in [
        (b'{"state": "running", "phase": "compiling"}', ("running", "compiling")),
        (b'{"state": "queued"}', ("queued", None)),
        (b'{"state": "running", "phase": "linking"}', ("running", None)),
    ]:
        data = body.replace(b"{", b'{"execution_id": "%s", ' % job.execution_id.encode(), 1)
        check_pending(job, data)
        assert (job.state, job.phase) == seen


def test_run_asynchronous_is_submit_then_result(server, examples):
    result = Client(server.url).run(examples / "hello.wasm", args=["x"], asynchronous=True)
    assert result.status == "completed"
    assert b"arg[1]=x" in result.stdout


def test_pinned_key_is_accepted_and_another_key_refused_before_any_session(server, examples):
    assert Client(server.url, key_id=server.key_id()).run(examples / "tiny.wasm").status == "completed"
    client = Client(server.url, key_id="00" * 32)
    with pytest.raises(KeyMismatchError) as mismatch:
        client.run(examples / "tiny.wasm")
    assert mismatch.value.actual == server.key_id()
    assert client.stats["session_requests"] == 0
