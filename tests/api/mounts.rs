//! Mounts through the whole protocol (protocol v1.1 §E): archives sent or named in
//! the sealed request, the guest's files, `mounts_out` in the sealed result,
//! hostile archives as logged `invalid_request`s, and `ENOSPC` at `files_bytes`.

use std::collections::BTreeMap;

use wasm_hypervisor_client::Wire;
use wasm_hypervisor_client::archive::{pack_directory, unpack_into};
use wasm_hypervisor_protocol::encoding::{Hex, encode_base64};
use wasm_hypervisor_protocol::payload::{
    ExecutionRequest, ExecutionResult, MountRequest, RequestedLimits, Status,
};
use wasm_hypervisor_server::config::Bounded;

use crate::helpers::{TestApp, example, request};

/// A tar of `files` (path → contents), packed as `run --dir` packs a directory.
fn archive(files: &[(&str, &[u8])]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    for (path, contents) in files {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, contents).unwrap();
    }
    pack_directory(dir.path()).unwrap()
}

/// A writable mount's archive from a result, unpacked: path → contents.
fn mount_out(result: &ExecutionResult, path: &str) -> BTreeMap<String, Vec<u8>> {
    let out = result
        .mounts_out
        .iter()
        .flatten()
        .find(|out| out.path == path)
        .unwrap_or_else(|| panic!("no mounts_out for {path}: {:?}", result.mounts_out));
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("out");
    unpack_into(&out.tar.0, &target).unwrap();
    let mut files = BTreeMap::new();
    let mut pending = vec![target.clone()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let name = path.strip_prefix(&target).unwrap().to_str().unwrap();
                files.insert(name.to_owned(), std::fs::read(&path).unwrap());
            }
        }
    }
    files
}

fn files_request(args: &[&str], mounts: Vec<MountRequest>) -> ExecutionRequest {
    ExecutionRequest {
        args: args.iter().map(|arg| arg.to_string()).collect(),
        mounts,
        ..request(&example("files"))
    }
}

fn read_only(path: &str, tar: &[u8]) -> MountRequest {
    MountRequest {
        path: path.into(),
        tar: Some(encode_base64(tar)),
        ..Default::default()
    }
}

fn writable(path: &str) -> MountRequest {
    MountRequest {
        path: path.into(),
        writable: true,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_c_program_reads_and_writes_its_mounts_through_the_protocol() {
    let app = TestApp::spawn().await;
    let input = archive(&[
        ("input.txt", b"hello from the archive"),
        ("b.txt", b"b"),
        ("sub/c.txt", b"c"),
    ]);
    let plaintext = files_request(
        &["selftest", "/in", "/out"],
        vec![read_only("/in", &input), writable("/out")],
    );
    let result = app.execute(&plaintext).await.result;
    let stdout = String::from_utf8(result.stdout_bytes()).unwrap();
    assert_eq!(
        result.status,
        Status::Completed,
        "{stdout} {:?}",
        result.error
    );
    assert_eq!(result.exit_code, Some(0), "{stdout}");
    assert!(
        stdout.contains("input.txt: hello from the archive\n"),
        "{stdout}"
    );
    assert!(stdout.ends_with("selftest: ok\n"), "{stdout}");
    assert_eq!(
        result.limits.files_bytes,
        Some(256 << 20),
        "shown, with mounts"
    );
    assert_eq!(result.mounts_out.as_ref().map(Vec::len), Some(1));
    let files = mount_out(&result, "/out");
    assert_eq!(files["log.txt"], b"Hello World");
    assert_eq!(files["trunc.txt"], b"abc");
    assert_eq!(files.len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_archive_by_reference_mounts_like_the_archive_by_bytes() {
    let app = TestApp::spawn().await;
    let input = archive(&[("input.txt", b"hello from the archive")]);
    let by_bytes = files_request(
        &["selftest", "/in", "/out"],
        vec![read_only("/in", &input), writable("/out")],
    );
    let first = app.execute(&by_bytes).await.result;
    let by_reference = files_request(
        &["selftest", "/in", "/out"],
        vec![
            MountRequest {
                path: "/in".into(),
                tar_sha256: Some(Hex(wasm_hypervisor_protocol::digest::sha256(&input))),
                ..Default::default()
            },
            writable("/out"),
        ],
    );
    let second = app.execute(&by_reference).await.result;
    assert_eq!(second.status, Status::Completed, "{:?}", second.error);
    assert_eq!(second.stdout_bytes(), first.stdout_bytes());
    assert_eq!(mount_out(&second, "/out"), mount_out(&first, "/out"));
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_archives_are_logged_invalid_requests_naming_the_mount() {
    let app = TestApp::spawn_with(|config| {
        config.limits.max_mount_entries = Bounded::constant::<1000>();
    })
    .await;
    /// One 512-byte ustar header with `name`, `kind` and `size`, then `data`.
    fn member(name: &str, kind: u8, size: u64, data: &[u8]) -> Vec<u8> {
        let mut header = tar::Header::new_ustar();
        header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        header.set_entry_type(tar::EntryType::new(kind));
        header.set_size(size);
        header.set_mode(0o644);
        header.set_cksum();
        let mut bytes = header.as_bytes().to_vec();
        bytes.extend_from_slice(data);
        bytes.resize(bytes.len().next_multiple_of(512), 0);
        bytes
    }
    let end = vec![0u8; 1024];
    let many_empty_files: Vec<u8> = (0..1001)
        .flat_map(|n| member(&format!("f{n}"), b'0', 0, b""))
        .chain(end.clone())
        .collect();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "a symbolic link",
            [member("link", b'2', 0, b""), end.clone()].concat(),
        ),
        (
            "a hard link",
            [member("hard", b'1', 0, b""), end.clone()].concat(),
        ),
        (
            "a device",
            [member("dev", b'3', 0, b""), end.clone()].concat(),
        ),
        (
            "a FIFO",
            [member("fifo", b'6', 0, b""), end.clone()].concat(),
        ),
        (
            "a `..` segment",
            [member("../evil", b'0', 1, b"x"), end.clone()].concat(),
        ),
        (
            "an absolute name",
            [member("/etc/evil", b'0', 1, b"x"), end.clone()].concat(),
        ),
        // The member claims 4,096 bytes; the archive ends after 512.
        ("a truncated member", member("big", b'0', 4096, &[7; 512])),
        ("more members than max_mount_entries", many_empty_files),
    ];
    let size_before = app.state.log.size();
    for (what, tar) in &cases {
        let plaintext = files_request(&["selftest", "/in", "/out"], vec![read_only("/in", tar)]);
        let result = app.execute(&plaintext).await.result;
        assert_eq!(result.status, Status::InvalidRequest, "{what}");
        let error = result.error.unwrap_or_default();
        assert!(
            error.starts_with("`mounts[0]`'s archive is refused"),
            "{what}: {error}"
        );
        assert_eq!(result.mounts_out, None, "{what}");
    }
    assert_eq!(
        app.state.log.size(),
        size_before + cases.len() as u64,
        "every refusal is a logged execution"
    );
    // The server goes on.
    let fine = files_request(
        &["selftest", "/in", "/out"],
        vec![
            read_only("/in", &archive(&[("input.txt", b"x")])),
            writable("/out"),
        ],
    );
    assert_eq!(app.execute(&fine).await.result.status, Status::Completed);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_guest_filling_files_bytes_gets_enospc_and_its_status_is_unchanged() {
    let app = TestApp::spawn().await;
    let mut plaintext = files_request(&["fill", "/out"], vec![writable("/out")]);
    plaintext.limits = Some(RequestedLimits {
        files_bytes: Some(1 << 20),
        ..Default::default()
    });
    let result = app.execute(&plaintext).await.result;
    assert_eq!(result.status, Status::Completed, "{:?}", result.error);
    assert_eq!(result.exit_code, Some(0));
    assert_eq!(
        String::from_utf8(result.stdout_bytes()).unwrap(),
        "filled 1048576 bytes\n"
    );
    assert_eq!(result.limits.files_bytes, Some(1 << 20));
    assert_eq!(mount_out(&result, "/out")["fill.bin"].len(), 1 << 20);
    // The next execution has its own files.
    let again = app.execute(&plaintext).await.result;
    assert_eq!(again.status, Status::Completed);
}

#[tokio::test(flavor = "multi_thread")]
async fn mount_contents_over_files_bytes_are_an_invalid_request() {
    let app = TestApp::spawn().await;
    let input = archive(&[("input.txt", &[1; 4096])]);
    let mut plaintext = files_request(
        &["selftest", "/in", "/out"],
        vec![read_only("/in", &input), writable("/out")],
    );
    plaintext.limits = Some(RequestedLimits {
        files_bytes: Some(4095),
        ..Default::default()
    });
    let result = app.execute(&plaintext).await.result;
    assert_eq!(result.status, Status::InvalidRequest);
    let error = result.error.unwrap();
    assert!(
        error.starts_with("the mounts' contents are refused"),
        "{error}"
    );
    assert!(error.contains("4095"), "{error}");
}

/// Issue 25, row 2: a guest fills `max_mount_entries` with empty files whose
/// paths are 4,095 bytes (`long_paths.wat`): each would take 5,632 bytes of
/// archive (a pax record repeats its path) against the 1,024 per entry of the
/// bound, so the whole tree would be 5.5 times its bound. The archive comes back
/// cut at the last whole entry within `files_bytes` + 1,024 per entry + 1,024,
/// still a valid archive ending in its two zero blocks, and the result says so
/// with `mounts_out_truncated`; the status is the guest's.
#[tokio::test(flavor = "multi_thread")]
async fn a_writable_mount_past_its_archive_bound_comes_back_cut_and_flagged() {
    const ENTRIES: u64 = 2000;
    let app = TestApp::spawn_with(|config| {
        config.limits.max_mount_entries = Bounded::constant::<ENTRIES>();
    })
    .await;
    let files_bytes = 64 << 10;
    let plaintext = ExecutionRequest {
        mounts: vec![writable("/out")],
        limits: Some(RequestedLimits {
            files_bytes: Some(files_bytes),
            ..Default::default()
        }),
        ..request(&crate::helpers::fixture("long_paths"))
    };
    for wire in [Wire::V1, Wire::V1_1] {
        let client = app.client.clone().with_wire(wire);
        let session = client.open_session(&app.identity.public_key).await.unwrap();
        let request = wire.encode_request(&plaintext).unwrap();
        let result = client.execute(&session, &request).await.unwrap().result;
        assert_eq!(result.status, Status::Completed, "{:?}", result.error);
        assert_eq!(result.exit_code, Some(0));
        assert!(result.mounts_out_truncated, "{wire:?}");
        let tar = &result.mounts_out.as_ref().unwrap()[0].tar.0;
        let bound = files_bytes + 1024 * ENTRIES + 1024;
        assert!(tar.len() as u64 <= bound, "{} > {bound}", tar.len());
        assert!(
            tar.len() as u64 > bound - 5632,
            "cut at the last entry that fits"
        );
        assert!(tar.ends_with(&[0; 1024]));
        // A valid archive: the 15 directories, then files whose paths are
        // 4,095 bytes, in order, each whole.
        let mut archive = tar::Archive::new(&tar[..]);
        let paths: Vec<Vec<u8>> = archive
            .entries()
            .unwrap()
            .map(|entry| entry.unwrap().path_bytes().into_owned())
            .collect();
        assert!(
            paths.len() > 15 && (paths.len() as u64) < ENTRIES,
            "{}",
            paths.len()
        );
        assert!(paths[15..].iter().all(|path| path.len() == 4095));
        assert!(paths.is_sorted());
    }
    assert_eq!(app.stop_and_verify_log().await, 2);
}

/// A tar of `count` empty files, each under `depth - 1` directories of its own
/// (`007/d/d/.../f`), written by the `tar` crate's builder: paths over 100 bytes
/// go in GNU long-name members, so a member 2,040 deep (a 4,081-byte path)
/// takes about 5 KB of archive and implies 2,039 directories.
fn deep_archive(count: usize, depth: usize) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for i in 0..count {
        let path = format!("{i:03}/{}f", "d/".repeat(depth - 2));
        let mut header = tar::Header::new_gnu();
        header.set_size(0);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        builder.append_data(&mut header, path, &[][..]).unwrap();
    }
    builder.into_inner().unwrap()
}

/// Issue 25, row 1: parent directories that no member names are made, and each
/// counts against `max_mount_entries` as it is made, so an archive of a few
/// deep members is refused at the member that passes the bound (not after
/// building every directory of all of them).
#[tokio::test(flavor = "multi_thread")]
async fn an_archive_implying_more_directories_than_max_mount_entries_is_refused_at_the_member_that_passes_it()
 {
    let app = TestApp::spawn_with(|config| {
        config.limits.max_mount_entries = Bounded::constant::<5000>();
    })
    .await;
    // 10 members, 2,040 entries each: the third passes 5,000.
    let tar = deep_archive(10, 2040);
    let plaintext = files_request(&["selftest", "/in", "/out"], vec![read_only("/in", &tar)]);
    let result = app.execute(&plaintext).await.result;
    assert_eq!(result.status, Status::InvalidRequest);
    let error = result.error.unwrap_or_default();
    assert!(
        error.starts_with("`mounts[0]`'s archive is refused: archive member 2: `002/d/d/"),
        "{error}"
    );
    assert!(
        error.contains("more than 5000 files and directories")
            && error.contains("limits.max_mount_entries"),
        "{error}"
    );
    assert_eq!(result.mounts_out, None);
    // Two of them (4,080 entries) are within the bound, and mount.
    let fine = files_request(
        &["ls", "/in/000"],
        vec![read_only("/in", &deep_archive(2, 2040))],
    );
    let result = app.execute(&fine).await.result;
    assert_eq!(result.status, Status::Completed, "{:?}", result.error);
    assert_eq!(
        String::from_utf8(result.stdout_bytes()).unwrap(),
        ".\n..\nd\n"
    );
    app.stop_and_verify_log().await;
}

/// Issue 25, row 10: a pax record or a GNU long name that does not parse is
/// refused, naming the member by index and name, never skipped (the tar crate
/// skipped a broken record and used the header's size or name instead).
#[tokio::test(flavor = "multi_thread")]
async fn broken_pax_records_and_long_names_are_invalid_requests_naming_the_member() {
    let app = TestApp::spawn().await;
    /// One 512-byte ustar header with `name` and `kind`, then `data`.
    fn member(name: &str, kind: u8, data: &[u8]) -> Vec<u8> {
        let mut header = tar::Header::new_ustar();
        header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        header.set_entry_type(tar::EntryType::new(kind));
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        let mut bytes = header.as_bytes().to_vec();
        bytes.extend_from_slice(data);
        bytes.resize(bytes.len().next_multiple_of(512), 0);
        bytes
    }
    let with = |extension: Vec<u8>| {
        [
            member("ok", b'0', b"1"),
            extension,
            member("victim", b'0', b"data"),
            vec![0; 1024],
        ]
        .concat()
    };
    let cases = [
        (
            "a pax size that is not a number",
            with(member("PaxHeader", b'x', b"12 size=6x0\n")),
            "its pax record 0 (`size`) is not a decimal number",
        ),
        (
            "a pax record whose length passes the newline",
            with(member("PaxHeader", b'x', b"13 path=abc\n")),
            "its pax record 0 has a length past the end of the pax data",
        ),
        (
            "a pax record with no newline",
            with(member("PaxHeader", b'x', b"11 path=abc")),
            "its pax record 0 does not end in a newline where its length says",
        ),
        (
            "a GNU long name and a pax path",
            with(
                [
                    member("././@LongLink", b'L', b"one\0"),
                    member("PaxHeader", b'x', b"12 path=two\n"),
                ]
                .concat(),
            ),
            "it has both a GNU long name and a pax `path` record",
        ),
    ];
    for (what, tar, reason) in &cases {
        let plaintext = files_request(&["selftest", "/in", "/out"], vec![read_only("/in", tar)]);
        let result = app.execute(&plaintext).await.result;
        assert_eq!(result.status, Status::InvalidRequest, "{what}");
        let error = result.error.unwrap_or_default();
        assert!(
            error.starts_with("`mounts[0]`'s archive is refused: archive member 1 (`victim`): "),
            "{what}: {error}"
        );
        assert!(error.contains(reason), "{what}: {error}");
    }
    // The same archive with a well-formed record mounts.
    let fine = with(member("PaxHeader", b'x', b"12 path=abc\n"));
    let plaintext = files_request(&["ls", "/in"], vec![read_only("/in", &fine)]);
    let result = app.execute(&plaintext).await.result;
    assert_eq!(result.status, Status::Completed, "{:?}", result.error);
    assert_eq!(
        String::from_utf8(result.stdout_bytes()).unwrap(),
        ".\n..\nabc\nok\n"
    );
    app.stop_and_verify_log().await;
}
