"""Known-answer and tampering tests of the C2SP formats (``wasm_hypervisor.tlog``):
the vectors of the C2SP texts (signed-note.md, tlog-cosignature.md, tlog-proof.md,
tlog-policy.md's example) and of Go's ``golang.org/x/mod/sumdb/note`` (note.go's
doc and note_test.go), the same ones crates/protocol/src/note.rs quotes. No server."""

from __future__ import annotations

import base64
import hashlib
import uuid
from typing import List

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from wasm_hypervisor import _crypto
from wasm_hypervisor.tlog import (
    MAX_SIGNATURES,
    TYPE_COSIGNATURE_V1,
    TYPE_ECDSA,
    TYPE_ED25519,
    Note,
    NoteError,
    NoteSignature,
    Policy,
    PolicyError,
    TlogProof,
    TlogProofError,
    VerifierKey,
    cosignature_message,
    key_id,
)

# signed-note.md, "Verifier keys", "Example".
SPEC_VKEY = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
SPEC_NOTE = "This is an example message.\n\n\u2014 example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n"
# Go's note.go doc and note_test.go (TestSign): the vkey of PeterNeumann and its note.
GO_SKEY_SEED = base64.b64decode("AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz")[1:]
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
GO_NOTE = GO_TEXT + "\n\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
GO_NOTE_TWO_SIGNATURES = GO_NOTE + "\u2014 EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n"
# tlog-cosignature.md's example (neither key is published).
SPEC_COSIGNED = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n\u2014 example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n\u2014 witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==\n"
# tlog-proof.md's example, verbatim: its signatures are elided ("[...]").
SPEC_PROOF = "c2sp.org/tlog-proof@v1\nextra YWdlLXYxLjIuMS1kYXJ3aW4tYXJtNjQudGFyLmd6kYXJ3aW4tYXJ\nindex 73894\ngSKyXoYZUgZ6jduWYrkDOARinOMGJveXjgMkBTcdPlQ=\nB95lDa8R83lS8n0eG+o0buTxRKQTYFi//1U8anccXmA=\nEKNzoDWG8LGC0Yp9o+sv3qllpMP9uHQ9B20KNL+Q1zs=\nRoopEkOdqkYqMB4MJXrbt/hMjOxsVn0IrWjpz1ZMMes=\nAHCioX9nLjsrse6YhjRRmk1WUEirVOLLRoOQ6vfO5vk=\n\nexample.com/fancylog\n109482\nsFodV/vSp5O8n9a8QpW6PRY97tfOSW5bsc2Xl/EQi08=\n\n\u2014 example.com/fancylog hI2DJw[...]1roloI=\n\u2014 witness1.example mJirIklj[...]qY9v2B/5bg==\n\u2014 witness2.example TnKKVHLX[...]xwYwrSjgow==\n\u2014 witness3.example S4X82uH5[...]3oEcROGLFQ==\n"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class Ed25519Signer:
    """A note key (type 0x01) or a witness's cosigner key (type 0x04), for the tests."""

    def __init__(self, name: str, signature_type: int = TYPE_ED25519, seed: bytes = b"") -> None:
        self.name = name
        self.type = signature_type
        self.key = Ed25519PrivateKey.from_private_bytes(seed) if seed else Ed25519PrivateKey.generate()
        self.public = self.key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.key_id = key_id(name, signature_type, self.public)

    def vkey(self) -> str:
        return f"{self.name}+{self.key_id:08x}+{b64(bytes([self.type]) + self.public)}"

    def sign(self, note: Note, timestamp: int = 1_700_000_000) -> NoteSignature:
        if self.type == TYPE_COSIGNATURE_V1:
            signature = timestamp.to_bytes(8, "big") + self.key.sign(cosignature_message(timestamp, note.text))
        else:
            signature = self.key.sign(note.text.encode())
        return NoteSignature(self.name, self.key_id, signature)


def test_the_spec_example_note_verifies_under_the_spec_vkey():
    key = VerifierKey.parse(SPEC_VKEY)
    assert str(key) == SPEC_VKEY
    assert (key.name, key.key_id, key.signature_type) == ("example.com/foo", 0x530D903A, TYPE_ED25519)
    note = Note.parse(SPEC_NOTE)
    assert note.text == "This is an example message.\n"
    assert note.to_text() == SPEC_NOTE
    assert [v.verifier for v in note.verify([key])] == [0]


def test_gos_signer_key_signs_gos_note_byte_for_byte():
    signer = Ed25519Signer("PeterNeumann", seed=GO_SKEY_SEED)
    assert signer.vkey() == GO_VKEY
    note = Note(GO_TEXT)
    note.add_signature(signer.sign(note))
    assert note.to_text() == GO_NOTE
    assert Note.parse(GO_NOTE) == note
    Note.parse(GO_NOTE).verify([VerifierKey.parse(GO_VKEY)])


def test_a_signature_of_an_unknown_key_is_ignored_and_one_known_is_enough():
    note = Note.parse(GO_NOTE_TWO_SIGNATURES)
    assert note.to_text() == GO_NOTE_TWO_SIGNATURES
    assert note.signatures[1].name == "EnochRoot"
    assert len(note.verify([VerifierKey.parse(GO_VKEY)])) == 1
    other = Ed25519Signer("PeterNeumann")
    with pytest.raises(NoteError, match="no signature of a known key"):
        note.verify([VerifierKey.parse(other.vkey())])
    with pytest.raises(NoteError, match="key id does not match"):
        VerifierKey.parse(GO_VKEY.replace("PeterNeumann", "PeterNeuman"))


def open_go(text) -> None:
    Note.parse(text).verify([VerifierKey.parse(GO_VKEY)])


@pytest.mark.parametrize(
    "tampered, why",
    [
        (GO_NOTE.replace("problem,", "problem;", 1), "does not verify"),
        (GO_NOTE.replace("ZJkuBS9UG", "ZJkuBS9UH"), "does not verify"),
        (GO_NOTE.replace(".\n\n", ".\n", 1), "a note is a text"),
        (GO_TEXT, "a note is a text"),
        (GO_NOTE.rstrip("\n"), "a note is a text"),
        (GO_TEXT + "\n", "a note is a text"),
        (GO_NOTE.replace("x08go/", "AAAAAA"), "no signature of a known key"),
        (GO_NOTE.replace("\u2014 PeterNeumann", "\u2014 PeterNewman"), "no signature of a known key"),
        (GO_NOTE + GO_NOTE.rsplit("\n\n", 1)[1], "two signatures of the key PeterNeumann\\+c74f20a3"),
        (GO_NOTE.replace("If", "I\tf"), "control character"),
        (GO_NOTE.replace("If", "I\rf"), "control character"),
        (b"\xc9" + GO_NOTE.encode()[1:], "UTF-8"),
    ]
    + [
        (GO_TEXT + "\n" + line, "signature|key name")
        for line in [
            "- PeterNeumann x08go/ZJ\n",
            "\u2014PeterNeumann x08go/ZJ\n",
            "\u2014 PeterNeumann\n",
            "\u2014  x08go/ZJ\n",
            "\u2014 Peter+Neumann x08go/ZJ\n",
            "\u2014 Peter\u00a0Neumann x08go/ZJ\n",
            "\u2014 PeterNeumann x08go/ZJ=\n",
            "\u2014 PeterNeumann x08go/ZJ \n",
            "\u2014 PeterNeumann x08go/Y=\n",
            "\u2014 PeterNeumann x08go/ZK\n",
            "\n",
        ]
    ],
)
def test_tampered_notes_are_refused(tampered, why):
    open_go(GO_NOTE)
    with pytest.raises(NoteError, match=why):
        open_go(tampered)


def test_a_signature_of_another_text_by_a_known_key_makes_the_note_malformed():
    signer = Ed25519Signer("PeterNeumann", seed=GO_SKEY_SEED)
    other = Note("another text\n")
    other.add_signature(signer.sign(other))
    with pytest.raises(NoteError, match="two signatures"):
        open_go(GO_NOTE + other.to_text().split("\n\n", 1)[1])
    # An extra signature of an unknown key is fine.
    open_go(GO_NOTE + f"\u2014 witness.example {b64(bytes([7]) * 40)}\n")


def test_a_note_with_more_than_the_maximum_of_signatures_is_refused():
    signer = Ed25519Signer("log.example")
    note = Note("text\n")
    note.add_signature(signer.sign(note))
    text = note.to_text() + "".join(f"\u2014 w{i}.example {b64(bytes([1]) * 68)}\n" for i in range(MAX_SIGNATURES - 1))
    assert len(Note.parse(text).signatures) == MAX_SIGNATURES
    Note.parse(text).verify([VerifierKey.parse(signer.vkey())])
    with pytest.raises(NoteError, match="at most 100 signatures"):
        Note.parse(text + f"\u2014 one.more {b64(bytes([1]) * 68)}\n")
    with pytest.raises(NoteError, match="at most 1000000 bytes"):
        Note.parse("a" * 1_000_000 + "\n\n" + text)


def test_blank_lines_inside_the_text_are_the_texts():
    signer = Ed25519Signer("log.example")
    for text in ["\n", "a\n\nb\n", "a\n\n"]:
        note = Note(text)
        note.add_signature(signer.sign(note))
        parsed = Note.parse(note.to_text())
        assert parsed.text == text
        parsed.verify([VerifierKey.parse(signer.vkey())])


def test_every_mangling_of_gos_vkey_is_refused():
    data = GO_VKEY.encode()
    for i in range(len(data) + 1):
        for j in range(i + 1, len(data) + 1):
            if (i, j) != (0, len(data)):
                with pytest.raises(NoteError):
                    VerifierKey.parse(data[i:j].decode())
    for i in range(len(data)):
        changed = bytearray(data)
        changed[i] += 1
        with pytest.raises(NoteError):
            VerifierKey.parse(changed.decode())
    # Go's crafted keys: non-canonical base64; a 33-byte key with its own id; type 0x65.
    with pytest.raises(NoteError, match="verifier key is"):
        VerifierKey.parse("PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==")
    longer = base64.b64decode("ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW") + b"\x00"
    with pytest.raises(NoteError, match="not a public key of its type"):
        VerifierKey.parse(f"PeterNeumann+{key_id('PeterNeumann', 1, longer[1:]):08x}+{b64(longer)}")
    with pytest.raises(NoteError, match="type 0x65 is not supported"):
        VerifierKey.parse("PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW")
    with pytest.raises(NoteError, match="verifier key is"):
        VerifierKey.parse(GO_VKEY.replace("c74f20a3", "C74F20A3"))


def test_two_verifier_keys_with_one_name_and_id_are_refused():
    key = VerifierKey.parse(GO_VKEY)
    with pytest.raises(NoteError, match="two verifier keys"):
        Note.parse(GO_NOTE).verify([key, key])


def test_the_spec_cosignature_reads_as_key_id_timestamp_signature():
    note = Note.parse(SPEC_COSIGNED)
    assert note.to_text() == SPEC_COSIGNED
    witness = note.signatures[1]
    assert (witness.name, witness.key_id) == ("witness.example.com/w1", 0x8D66CF3F)
    assert len(witness.signature) == 72 and witness.signature[:8] == (1_679_315_147).to_bytes(8, "big")
    assert cosignature_message(1_679_315_147, note.text) == (
        b"cosignature/v1\ntime 1679315147\nexample.com/behind-the-sofa\n20852163\n"
        b"CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    )


def test_a_cosignature_verifies_with_its_timestamp_and_tampering_is_refused():
    log = Ed25519Signer("log.example")
    witness = Ed25519Signer("witness.example", TYPE_COSIGNATURE_V1)
    note = Note("log.example\n3\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n")
    note.add_signature(log.sign(note))
    note.add_signature(witness.sign(note, 1_700_000_000))
    keys = [VerifierKey.parse(log.vkey()), VerifierKey.parse(witness.vkey())]
    assert keys[1].signature_type == TYPE_COSIGNATURE_V1
    verified = Note.parse(note.to_text()).verify(keys)
    assert [(v.verifier, v.timestamp) for v in verified] == [(0, None), (1, 1_700_000_000)]
    line = note.signatures[1]
    later = bytearray(line.signature)
    later[7] ^= 1
    for signature in [bytes(later), line.signature[:-1]]:
        tampered = Note(note.text, [NoteSignature(line.name, line.key_id, signature)])
        with pytest.raises(NoteError, match="does not verify"):
            tampered.verify(keys)
    # A plain Ed25519 signature is not a cosignature: the key ids differ with the type.
    seed = bytes([9]) * 32
    as_log, as_witness = Ed25519Signer("w.example", seed=seed), Ed25519Signer("w.example", TYPE_COSIGNATURE_V1, seed)
    assert as_log.key_id != as_witness.key_id
    plain = Note(note.text)
    plain.add_signature(as_log.sign(plain))
    with pytest.raises(NoteError, match="no signature of a known key"):
        plain.verify([VerifierKey.parse(as_witness.vkey())])


def ecdsa_line(name: str, key: ec.EllipticCurvePrivateKey, note: Note) -> NoteSignature:
    spki = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    key_id_ = int.from_bytes(hashlib.sha256(spki).digest()[:4], "big")
    return NoteSignature(name, key_id_, key.sign(note.text.encode(), ec.ECDSA(hashes.SHA256())))


def test_an_ecdsa_line_verifies_under_its_spki_vkey():
    key = ec.generate_private_key(ec.SECP256R1())
    spki = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    vkey = VerifierKey.ecdsa_p256("log.example", spki)
    assert vkey.signature_type == TYPE_ECDSA
    assert vkey.key_id.to_bytes(4, "big") == hashlib.sha256(spki).digest()[:4]
    assert VerifierKey.parse(str(vkey)) == vkey
    note = Note("log.example\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n")
    note.add_signature(ecdsa_line("log.example", key, note))
    Note.parse(note.to_text()).verify([vkey])
    with pytest.raises(NoteError, match="does not verify"):
        Note.parse(note.to_text().replace("\n0\n", "\n1\n", 1)).verify([vkey])
    with pytest.raises(NoteError, match="not a public key"):
        VerifierKey.ecdsa_p256("log.example", spki[:-1])


# -- policies ----------------------------------------------------------------


class World:
    def __init__(self) -> None:
        self.log = Ed25519Signer("log.example/v1")
        self.witnesses = [Ed25519Signer(f"{n}.example", TYPE_COSIGNATURE_V1) for n in ["x1", "x2", "x3", "y1", "y2", "y3"]]

    def spec_example(self) -> str:
        """tlog-policy.md's "Example policy", with keys of our own for its elided vkeys."""
        v = [w.vkey() for w in self.witnesses]
        return (
            f"log {self.log.vkey()}\n\nwitness X1 {v[0]}\nwitness X2 {v[1]}\nwitness X3 {v[2]}\n"
            "group X-witnesses 2 X1 X2 X3\n\n"
            f"witness Y1 {v[3]}\nwitness Y2 {v[4]}\nwitness Y3 {v[5]}\ngroup Y-witnesses any Y1 Y2 Y3\n\n"
            "group X-and-Y all X-witnesses Y-witnesses\nquorum X-and-Y\n"
        )

    def note(self, cosigners: List[int]) -> str:
        note = Note("log.example/v1\n5\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n")
        note.add_signature(self.log.sign(note))
        for i in cosigners:
            note.add_signature(self.witnesses[i].sign(note))
        return note.to_text()


@pytest.mark.parametrize(
    "cosigners, passes",
    [([0, 1, 3], True), ([0, 2, 5], True), ([0, 1, 2, 3, 4, 5], True), ([0, 3], False), ([0, 1], False), ([3, 4, 5], False), ([], False)],
)
def test_the_spec_example_policy_needs_two_xs_and_one_y(cosigners, passes):
    world = World()
    policy = Policy.parse(world.spec_example())
    assert len(policy.logs) == 1 and len(policy.witnesses) == 6
    if passes:
        verified = policy.verify_checkpoint(world.note(cosigners))
        assert verified.checkpoint.tree_size == 5
        assert sorted(w for w, _ in verified.cosignatures) == sorted(cosigners)
    else:
        with pytest.raises(PolicyError, match="quorum"):
            policy.verify_checkpoint(world.note(cosigners))


def test_quorum_none_and_single_log_accept_the_logs_signature_alone():
    world = World()
    for policy in [Policy.single_log(world.log.vkey()), Policy.parse(f"  log\t{world.log.vkey()} https://x \n# c\nquorum none")]:
        policy.verify_checkpoint(world.note([]))
        policy.verify_checkpoint(world.note([0]))  # an unknown witness's cosignature is ignored
    with pytest.raises(PolicyError, match="type 0x01 or 0x02"):
        Policy.single_log(world.witnesses[0].vkey())
    other = Ed25519Signer("log.example/v2")
    with pytest.raises(NoteError, match="no signature of a known key"):
        Policy.single_log(other.vkey()).verify_checkpoint(world.note([]))
    # A log key named other than the origin signed: refused.
    renamed = Ed25519Signer("log.example/v2", seed=bytes([3]) * 32)
    note = Note("log.example/v1\n5\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n")
    note.add_signature(renamed.sign(note))
    with pytest.raises(NoteError, match="origin is not the name"):
        Policy.single_log(renamed.vkey()).verify_checkpoint(note.to_text())


def test_malformed_policies_are_refused_naming_the_line():
    world = World()
    log, w0, w1 = world.log.vkey(), world.witnesses[0].vkey(), world.witnesses[1].vkey()
    for text, why in [
        (f"log {log}\n", "this one has none"),
        (f"log {log}\nquorum none\nquorum none\n", "line 3: a policy has exactly one quorum"),
        (f"log {log}\nquorum W\n", "line 2: the name is not defined"),
        (f"quorum W\nwitness W {w0}\n", "line 1: the name is not defined"),
        (f"witness none {w0}\nquorum none\n", "line 1: the name is `none`"),
        (f"witness W {w0}\nwitness W {w1}\nquorum none\n", "line 2: the name is `none` or already defined"),
        (f"witness W {w0}\nwitness V {w0}\nquorum none\n", "line 2: this public key is already"),
        (f"log {log}\nlog {log}\nquorum none\n", "line 2: this public key is already"),
        (f"log {w0}\nquorum none\n", "line 1: a log key is of type"),
        (f"witness W {log}\nquorum none\n", "line 1: a log key is of type"),
        (f"witness W {w0}\ngroup G 2 W\nquorum G\n", "line 2: the threshold"),
        (f"witness W {w0}\ngroup G 0 W\nquorum G\n", "line 2: the threshold"),
        (f"witness W {w0}\ngroup G 01 W\nquorum G\n", "line 2: the threshold"),
        (f"witness W {w0}\ngroup G +1 W\nquorum G\n", "line 2: the threshold"),
        (f"witness W {w0}\ngroup G any W W\nquorum G\n", "line 2: a member is listed twice"),
        (f"witness W {w0}\ngroup G any none\nquorum G\n", "line 2: a member is listed twice, or is `none`"),
        (f"witness W {w0}\ngroup G any\nquorum none\n", "line 2: wrong number of items"),
        (f"log {log} url extra\nquorum none\n", "line 1: wrong number of items"),
        (f"logs {log}\nquorum none\n", "line 1: a line is log"),
        (f"log {log}\r\nquorum none\n", "line 1: a control character"),
        (f"log {log}\nquorum none\x7f\n", "line 2: a control character"),
        (b"log \xff\nquorum none\n", "line 1: names, keys and URLs are UTF-8"),
        (f"log {log[:-2]}\nquorum none\n", "line 1: "),
    ]:
        with pytest.raises(PolicyError, match=why):
            Policy.parse(text)
    # Comments may hold any octet but the forbidden control characters.
    Policy.parse(b"# \xff\xfe comment\n\t# another\nquorum none")


# -- tlog-proofs -------------------------------------------------------------


def test_the_spec_example_proof_reads_up_to_its_elided_signatures():
    with pytest.raises(TlogProofError, match="not a signed note"):
        TlogProof.parse(SPEC_PROOF)
    proof_part, note_part = SPEC_PROOF.split("\n\n", 1)
    body = note_part.split("\n\n", 1)[0]
    whole = f"{proof_part}\n\n{body}\n\n\u2014 example.com/fancylog {b64(bytes([7]) * 68)}\n"
    proof = TlogProof.parse(whole)
    assert proof.index == 73894
    assert proof.extra is not None and proof.extra.startswith(b"age-v1.2.1-darwin-arm64.tar.gz")
    assert len(proof.inclusion_proof) == 5 and b64(proof.inclusion_proof[4]) == "AHCioX9nLjsrse6YhjRRmk1WUEirVOLLRoOQ6vfO5vk="
    assert proof.checkpoint.text == body + "\n"
    assert proof.to_text() == whole
    with pytest.raises(TlogProofError, match="not a 57-byte v1 log leaf"):
        proof.verify(Policy.single_log(Ed25519Signer("example.com/fancylog").vkey()))


def leaf(i: int) -> bytes:
    return b"\x01" + uuid.UUID(int=i + 1).bytes + (1_795_000_000_000 + i).to_bytes(8, "big") + bytes([i]) * 32


def root_and_path(leaves: List[bytes], index: int):
    """RFC 9162 §2.1.1 MTH and §2.1.3.1 PATH, for the tests."""

    def mth(hashes):
        if len(hashes) == 1:
            return hashes[0]
        k = 1 << ((len(hashes) - 1).bit_length() - 1)
        return _crypto.node_hash(mth(hashes[:k]), mth(hashes[k:]))

    def path(m, hashes):
        if len(hashes) == 1:
            return []
        k = 1 << ((len(hashes) - 1).bit_length() - 1)
        if m < k:
            return path(m, hashes[:k]) + [mth(hashes[k:])]
        return path(m - k, hashes[k:]) + [mth(hashes[:k])]

    hashes = [_crypto.leaf_hash(x) for x in leaves]
    return mth(hashes), path(index, hashes)


def make_proof(log: Ed25519Signer, size: int = 7, index: int = 3) -> str:
    leaves = [leaf(i) for i in range(size)]
    root, path = root_and_path(leaves, index)
    note = Note(f"{log.name}\n{size}\n{b64(root)}\n")
    note.add_signature(log.sign(note))
    return TlogProof(leaves[index], index, path, note).to_text()


def test_a_proof_verifies_and_every_tampered_variant_is_refused():
    log = Ed25519Signer("log.example/v1")
    policy = Policy.single_log(log.vkey())
    text = make_proof(log)
    verified = TlogProof.parse(text).verify(policy)
    assert verified.leaf == leaf(3) and verified.index == 3 and verified.checkpoint.checkpoint.tree_size == 7
    assert TlogProof.parse(text).to_text() == text
    lines = text.split("\n")
    flipped_hash = b64(bytes([base64.b64decode(lines[3])[0] ^ 1]) + base64.b64decode(lines[3])[1:])
    for tampered, why in [
        (text.replace("index 3\n", "index 4\n"), "inclusion proof does not verify"),
        (text.replace("index 3\n", "index 03\n"), "index line"),
        (text.replace("index 3\n", "index 7\n"), "index 7 is not in the checkpoint's tree of 7"),
        (text.replace(lines[1], "extra " + b64(leaf(4))), "inclusion proof does not verify"),
        (text.replace(lines[1] + "\n", ""), "no extra line"),
        (text.replace(lines[1], "extra "), "extra line"),
        (text.replace(lines[3], flipped_hash), "inclusion proof does not verify"),
        (text.replace(lines[3] + "\n", ""), "inclusion proof does not verify"),
        (text.replace(lines[3], lines[3] + "\n" + lines[3]), "inclusion proof does not verify"),
        (text.replace(lines[3], lines[3][:-1]), "proof line"),
        (text.replace("\n7\n", "\n8\n"), "does not verify"),
        (text.replace("c2sp.org/tlog-proof@v1", "c2sp.org/tlog-proof@v2"), "starts with the line"),
        (text.replace(f"\n\n{log.name}\n", f"\n{log.name}\n"), "proof line"),
        (text.rsplit("\u2014", 1)[0], "not a signed note"),
    ]:
        with pytest.raises(ValueError, match=why):
            TlogProof.parse(tampered).verify(policy)
    # Another log's key, a policy wanting a witness.
    with pytest.raises(NoteError):
        TlogProof.parse(text).verify(Policy.single_log(Ed25519Signer("log.example/v1").vkey()))
    witness = Ed25519Signer("w.example", TYPE_COSIGNATURE_V1)
    with pytest.raises(PolicyError, match="quorum"):
        TlogProof.parse(text).verify(Policy.parse(f"log {log.vkey()}\nwitness W {witness.vkey()}\nquorum W\n"))
