"""Executions against a real server, in protocol v1.1 (the default) and v1."""

from __future__ import annotations

import hashlib
import io
import tarfile

import pytest

from wasm_hypervisor import Client, Mount, RequestError, ResponseError, ServerError


def tar_of(files: dict) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.mark.parametrize("wire", ["v1.1", "v1"])
def test_run_passes_args_env_and_stdin_and_returns_output(server, examples, wire):
    client = Client(server.url, wire=wire)
    result = client.run(
        examples / "hello.wasm", args=["one", "two words"], env={"NAME": "py", "EXIT_CODE": "3"}, stdin=b"abc\x00def"
    )
    assert result.status == "completed"
    assert result.exit_code == 3
    assert result.stdout == (
        b"hello from wasm\narg[1]=one\narg[2]=two words\nNAME=py\nstdin: 7 bytes\nabc\x00def"
    )
    assert result.stderr == b"hello: done\n"
    assert result.fuel_consumed > 0
    assert result.wall_time_us > 0
    assert result.module_sha256 == hashlib.sha256((examples / "hello.wasm").read_bytes()).hexdigest()
    assert result.receipt.execution_id == result.execution_id
    assert result.receipt.status == "completed"


def test_module_may_be_bytes_or_a_path(server, examples):
    client = Client(server.url)
    data = (examples / "tiny.wasm").read_bytes()
    by_bytes = client.run(data)
    by_path = client.run(str(examples / "tiny.wasm"))
    assert by_bytes.stdout == by_path.stdout == b"hello\n"
    assert by_bytes.module_sha256 == by_path.module_sha256


def test_sha256sum_reads_all_of_a_large_stdin(server, examples):
    data = bytes(range(256)) * 4096  # 1 MiB
    result = Client(server.url).run(examples / "sha256sum.wasm", stdin=data)
    assert result.status == "completed"
    assert result.stdout == f"{hashlib.sha256(data).hexdigest()}  -\n".encode()


def test_fuel_limit_ends_the_guest_with_fuel_exhausted(server, examples):
    result = Client(server.url).run(examples / "sha256sum.wasm", stdin=b"x" * 100_000, limits={"fuel": 10_000})
    assert result.status == "fuel_exhausted"
    assert result.limits["fuel"] == 10_000
    assert result.fuel_consumed <= 10_000


def test_timeout_limit_stops_a_sleeping_guest(server, examples):
    result = Client(server.url).run(examples / "sleep.wasm", args=["10000"], limits={"timeout_ms": 200})
    assert result.status == "timeout"
    assert result.limits["timeout_ms"] == 200


def test_memory_limit_stops_a_guest_that_grows_past_it(server, examples):
    result = Client(server.url).run(examples / "memhog.wasm", limits={"memory_bytes": 2 * 1024 * 1024})
    assert result.status == "memory_limit"
    assert result.limits["memory_bytes"] == 2 * 1024 * 1024


def test_unknown_limit_is_refused_before_sending(server, examples):
    client = Client(server.url)
    with pytest.raises(ValueError, match="unknown limit"):
        client.run(examples / "tiny.wasm", limits={"gas": 1})
    assert client.stats["session_requests"] == 0


@pytest.mark.parametrize("wire", ["v1.1", "v1"])
def test_mounts_in_and_out_give_the_guest_files_and_return_what_it_wrote(server, examples, wire):
    result = Client(server.url, wire=wire).run(
        examples / "files.wasm",
        args=["selftest", "/in", "/out"],
        mounts=[Mount("/in", tar_of({"input.txt": b"hello input"})), Mount("/out", writable=True)],
    )
    assert result.status == "completed", result.stdout
    assert result.stdout.endswith(b"selftest: ok\n")
    assert b"input.txt: hello input" in result.stdout
    assert result.mounts_out is not None and [m.path for m in result.mounts_out] == ["/out"]
    files = result.mounts_out[0].files()
    assert files["log.txt"] == b"Hello World"
    assert files["trunc.txt"] == b"abc"


def test_mount_from_a_host_directory_and_extract_into_one(server, examples, tmp_path):
    source = tmp_path / "source"
    (source / "sub").mkdir(parents=True)
    (source / "input.txt").write_bytes(b"from disk")
    (source / "sub" / "deep.txt").write_bytes(b"deep")
    result = Client(server.url).run(
        examples / "files.wasm",
        args=["selftest", "/in", "/out"],
        mounts=[Mount.directory("/in", source), {"path": "/out", "writable": True}],
    )
    assert result.status == "completed", result.stdout
    assert b"input.txt: from disk" in result.stdout
    target = tmp_path / "out"
    result.mounts_out[0].extract(target)
    assert (target / "log.txt").read_bytes() == b"Hello World"


@pytest.mark.parametrize("wire", ["v1.1", "v1"])
def test_invoke_calls_a_component_export_with_wave_arguments(server, examples, wire):
    client = Client(server.url, wire=wire)
    assert client.run(examples / "calc.component.wasm", invoke="add(1, 2)").returns == ["3"]
    greeting = client.run(examples / "calc.component.wasm", invoke='greet("py")')
    assert greeting.status == "completed"
    assert greeting.returns == ['"Hello, py!"']


def test_invalid_module_is_a_result_not_an_exception(server):
    result = Client(server.url).run(b"\x00asm\x01\x00\x00\x00garbage")
    assert result.status == "invalid_module"
    assert result.error


def test_token_is_sent_when_authentication_is_on(make_server, examples):
    token = "py-test-token-0123456789"
    server = make_server(WASM_HYPERVISOR_AUTH__TOKENS_SHA256=f'["{hashlib.sha256(token.encode()).hexdigest()}"]')
    assert Client(server.url, token=token).run(examples / "tiny.wasm").stdout == b"hello\n"
    with pytest.raises(RequestError) as refused:
        Client(server.url).run(examples / "tiny.wasm")
    assert refused.value.status == 401 and refused.value.code == "unauthorized"
    # A refusal of the request is not the server's failure.
    assert not isinstance(refused.value, ServerError)
    assert isinstance(refused.value, ResponseError)
