//! C2SP transparency log policies (c2sp.org/tlog-policy; protocol v1.2 §T6): the
//! known logs, the known witnesses, their groups and the quorum, read from a policy
//! file, and the check of a checkpoint note against them.
//!
//! ```text
//! log <vkey> [<url>]
//! witness <name> <vkey> [<url>]
//! group <name> all|any|<k> <name>...
//! quorum <name>|none
//! ```
//!
//! The file is read as the spec says ("Policy file syntax and structure"): lines
//! end in newlines; items are separated by spaces and tabs, which may also lead and
//! trail; blank lines and lines whose first item starts with `#` are ignored; the
//! only control characters are tab and newline; a group or the quorum names only
//! witnesses and groups defined on earlier lines, each member at most once; `none`
//! is predefined (a quorum of no cosignature) and may be neither defined nor a
//! member; no two logs and no two witnesses wrap the same public key; exactly one
//! quorum line. Our choices where it leaves one (PROTOCOL.md, "Protocol v1.2:
//! transparency formats"): names and URLs must be UTF-8 (comments may be any
//! octets), a log key is of signature type `0x01` or `0x02` and a witness key of
//! type `0x04`, a numeric threshold is written without leading zeros, a final line
//! may lack its newline, and a policy holds at most [`MAX_ENTRIES`] logs, witnesses
//! and groups of each (the spec asks for at least 32).
//!
//! A checkpoint note passes ([`Policy::verify_checkpoint`]) when one of the logs,
//! named after its origin, signed it, every signature by a known key verifies, and
//! the witnesses whose cosignatures verified make the quorum: a group is satisfied
//! when at least `k` of its members are (a witness by its cosignature). Pure.

use crate::checkpoint::{self, CheckpointNoteError, VerifiedCheckpoint};
use crate::note::{Note, NoteError, TYPE_COSIGNATURE_V1, TYPE_ECDSA, TYPE_ED25519, VerifierKey};
use crate::provider::Provider;

/// The most logs, witnesses or groups a policy may define, of each.
pub const MAX_ENTRIES: usize = 256;
/// The largest policy file read, in bytes.
pub const MAX_POLICY_BYTES: usize = 1 << 20;

/// The name a quorum of no cosignature is written with.
const NONE: &str = "none";

/// Why a policy file was refused, or a checkpoint did not pass a policy. Lines are
/// numbered from 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The file is longer than [`MAX_POLICY_BYTES`].
    #[error("a policy file is at most {MAX_POLICY_BYTES} bytes")]
    TooLarge,
    /// A line holds a control character other than tab.
    #[error("line {line}: a control character other than tab")]
    Character { line: usize },
    /// A name, key or URL is not UTF-8.
    #[error("line {line}: names, keys and URLs are UTF-8")]
    NotUtf8 { line: usize },
    /// A line starts with a word that is not `log`, `witness`, `group` or `quorum`.
    #[error("line {line}: a line is log, witness, group or quorum")]
    UnknownKeyword { line: usize },
    /// A line has too few or too many items.
    #[error("line {line}: wrong number of items")]
    Items { line: usize },
    /// A vkey is not a verifier key.
    #[error("line {line}: {error}")]
    VerifierKey { line: usize, error: NoteError },
    /// A log key is not of type 0x01 or 0x02, or a witness key not of type 0x04.
    #[error("line {line}: a log key is of type 0x01 or 0x02, a witness key of type 0x04")]
    KeyType { line: usize },
    /// Two logs, or two witnesses, wrap the same public key.
    #[error("line {line}: this public key is already in the policy")]
    DuplicateKey { line: usize },
    /// A witness or group is named `none`, or with a name already defined.
    #[error("line {line}: the name is `none` or already defined")]
    Name { line: usize },
    /// A group or the quorum names a witness or group not defined on an earlier line.
    #[error("line {line}: the name is not defined on an earlier line")]
    Undefined { line: usize },
    /// A group lists a member twice, or lists `none`.
    #[error("line {line}: a member is listed twice, or is `none`")]
    Member { line: usize },
    /// A group's threshold is not `all`, `any` or a number from 1 to its size.
    #[error("line {line}: the threshold is all, any or a number from 1 to the group's size")]
    Threshold { line: usize },
    /// More than [`MAX_ENTRIES`] logs, witnesses or groups.
    #[error("line {line}: a policy defines at most {MAX_ENTRIES} of each")]
    TooManyEntries { line: usize },
    /// A second quorum line.
    #[error("line {line}: a policy has exactly one quorum line")]
    SecondQuorum { line: usize },
    /// No quorum line.
    #[error("a policy has exactly one quorum line, and this one has none")]
    NoQuorum,
    /// The checkpoint note is refused (a signature, its log, its body).
    #[error(transparent)]
    Checkpoint(#[from] CheckpointNoteError),
    /// The checkpoint's cosignatures do not make the quorum.
    #[error("the checkpoint's cosignatures do not make the policy's quorum")]
    QuorumNotMet,
}

/// A log the policy accepts checkpoints from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyLog {
    /// Its key, whose name is the log's origin.
    pub key: VerifierKey,
    pub url: Option<String>,
}

/// A witness the policy knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyWitness {
    /// Its name in the policy (groups and the quorum use it).
    pub name: String,
    /// Its cosigner key (type `0x04`).
    pub key: VerifierKey,
    pub url: Option<String>,
}

/// What a group or the quorum names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Member {
    /// `none`: satisfied by no cosignature at all.
    Nobody,
    Witness(usize),
    Group(usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Group {
    name: String,
    threshold: usize,
    members: Vec<Member>,
}

/// A trust policy: the logs, the witnesses and the quorum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    logs: Vec<PolicyLog>,
    witnesses: Vec<PolicyWitness>,
    groups: Vec<Group>,
    quorum: Member,
}

impl Policy {
    /// The policy of one log and no witness (`log <vkey>`, `quorum none`): what a
    /// verifier holding the log's key alone checks. A key of a type no log signs
    /// with is refused as that policy file's line 1 would be.
    pub fn single_log(key: VerifierKey) -> Result<Policy, PolicyError> {
        if ![TYPE_ED25519, TYPE_ECDSA].contains(&key.signature_type()) {
            return Err(PolicyError::KeyType { line: 1 });
        }
        Ok(Policy {
            logs: vec![PolicyLog { key, url: None }],
            witnesses: Vec::new(),
            groups: Vec::new(),
            quorum: Member::Nobody,
        })
    }

    /// Reads a policy file (the module doc says how strictly); `provider` verifies
    /// signatures under its keys.
    pub fn parse(provider: Provider, file: &[u8]) -> Result<Policy, PolicyError> {
        if file.len() > MAX_POLICY_BYTES {
            return Err(PolicyError::TooLarge);
        }
        let mut builder = Builder::default();
        for (at, raw) in file.split(|b| *b == b'\n').enumerate() {
            let line = at + 1;
            if raw.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
                return Err(PolicyError::Character { line });
            }
            let items: Vec<&[u8]> = raw
                .split(|b| *b == b' ' || *b == b'\t')
                .filter(|item| !item.is_empty())
                .collect();
            match items.first() {
                None => continue,
                Some(first) if first.starts_with(b"#") => continue,
                Some(_) => {}
            }
            let items = items
                .iter()
                .map(|item| std::str::from_utf8(item))
                .collect::<Result<Vec<&str>, _>>()
                .map_err(|_| PolicyError::NotUtf8 { line })?;
            builder.line(provider, line, &items)?;
        }
        builder.finish()
    }

    pub fn logs(&self) -> &[PolicyLog] {
        &self.logs
    }

    pub fn witnesses(&self) -> &[PolicyWitness] {
        &self.witnesses
    }

    /// Whether the witnesses marked in `cosigned` (by index in [`Policy::witnesses`])
    /// make the quorum.
    pub fn quorum_met(&self, cosigned: &[bool]) -> bool {
        // Groups name only earlier groups, so one pass in order settles them all.
        let mut groups_met: Vec<bool> = Vec::with_capacity(self.groups.len());
        for group in &self.groups {
            let met = group
                .members
                .iter()
                .filter(|member| is_met(**member, cosigned, &groups_met))
                .count();
            groups_met.push(met >= group.threshold);
        }
        is_met(self.quorum, cosigned, &groups_met)
    }

    /// Checks a checkpoint note against the policy: signed by one of its logs named
    /// after the origin, every known signature valid, a body of this log's format,
    /// and cosignatures that make the quorum.
    pub fn verify_checkpoint(&self, note: &[u8]) -> Result<VerifiedCheckpoint, PolicyError> {
        self.verify_checkpoint_note(Note::parse(note).map_err(CheckpointNoteError::from)?)
    }

    /// [`Policy::verify_checkpoint`] for a note already read.
    pub fn verify_checkpoint_note(&self, note: Note) -> Result<VerifiedCheckpoint, PolicyError> {
        let logs: Vec<VerifierKey> = self.logs.iter().map(|log| log.key.clone()).collect();
        let witnesses: Vec<VerifierKey> = self
            .witnesses
            .iter()
            .map(|witness| witness.key.clone())
            .collect();
        let verified = checkpoint::verify_note(note, &logs, &witnesses)?;
        let mut cosigned = vec![false; self.witnesses.len()];
        for (witness, _) in &verified.cosignatures {
            cosigned[*witness] = true;
        }
        if !self.quorum_met(&cosigned) {
            return Err(PolicyError::QuorumNotMet);
        }
        Ok(verified)
    }
}

fn is_met(member: Member, cosigned: &[bool], groups_met: &[bool]) -> bool {
    match member {
        Member::Nobody => true,
        Member::Witness(index) => cosigned.get(index).copied().unwrap_or(false),
        Member::Group(index) => groups_met.get(index).copied().unwrap_or(false),
    }
}

/// A verifier key named on line `line`.
fn parse_key(provider: Provider, line: usize, text: &str) -> Result<VerifierKey, PolicyError> {
    VerifierKey::parse(provider, text).map_err(|error| PolicyError::VerifierKey { line, error })
}

/// A group's threshold of `members` members: `all`, `any`, or a count from 1 to
/// `members` in plain decimal (no sign, no leading zero).
fn parse_threshold(line: usize, threshold: &str, members: usize) -> Result<usize, PolicyError> {
    match threshold {
        "all" => Ok(members),
        "any" => Ok(1),
        digits => digits
            .parse::<usize>()
            .ok()
            .filter(|_| digits.bytes().all(|b| b.is_ascii_digit()))
            .filter(|k| !digits.starts_with('0') && (1..=members).contains(k))
            .ok_or(PolicyError::Threshold { line }),
    }
}

/// A policy as its lines are read.
#[derive(Default)]
struct Builder {
    logs: Vec<PolicyLog>,
    witnesses: Vec<PolicyWitness>,
    groups: Vec<Group>,
    quorum: Option<Member>,
}

impl Builder {
    /// Reads one line's items into the policy, in the order the lines come.
    fn line(&mut self, provider: Provider, line: usize, items: &[&str]) -> Result<(), PolicyError> {
        match items {
            ["log", vkey, url @ ..] if url.len() <= 1 => {
                self.add_log(line, parse_key(provider, line, vkey)?, url.first().copied())
            }
            ["witness", name, vkey, url @ ..] if url.len() <= 1 => {
                // The name first: a taken name with a bad key is a `Name` error.
                self.check_new_name(line, name)?;
                self.add_witness(
                    line,
                    name,
                    parse_key(provider, line, vkey)?,
                    url.first().copied(),
                )
            }
            ["group", name, threshold, members @ ..] if !members.is_empty() => {
                self.check_new_name(line, name)?;
                self.add_group(line, name, threshold, members)
            }
            ["quorum", name] => self.set_quorum(line, name),
            ["log" | "witness" | "group" | "quorum", ..] => Err(PolicyError::Items { line }),
            _ => Err(PolicyError::UnknownKeyword { line }),
        }
    }

    /// `log <vkey> [<url>]`: a log's key, of a signature type a log signs with.
    fn add_log(
        &mut self,
        line: usize,
        key: VerifierKey,
        url: Option<&str>,
    ) -> Result<(), PolicyError> {
        if ![TYPE_ED25519, TYPE_ECDSA].contains(&key.signature_type()) {
            return Err(PolicyError::KeyType { line });
        }
        if self
            .logs
            .iter()
            .any(|log| log.key.public_key() == key.public_key())
        {
            return Err(PolicyError::DuplicateKey { line });
        }
        if self.logs.len() == MAX_ENTRIES {
            return Err(PolicyError::TooManyEntries { line });
        }
        self.logs.push(PolicyLog {
            key,
            url: url.map(str::to_owned),
        });
        Ok(())
    }

    /// `witness <name> <vkey> [<url>]`: a witness's cosignature key.
    fn add_witness(
        &mut self,
        line: usize,
        name: &str,
        key: VerifierKey,
        url: Option<&str>,
    ) -> Result<(), PolicyError> {
        if key.signature_type() != TYPE_COSIGNATURE_V1 {
            return Err(PolicyError::KeyType { line });
        }
        if self
            .witnesses
            .iter()
            .any(|witness| witness.key.public_key() == key.public_key())
        {
            return Err(PolicyError::DuplicateKey { line });
        }
        if self.witnesses.len() == MAX_ENTRIES {
            return Err(PolicyError::TooManyEntries { line });
        }
        self.witnesses.push(PolicyWitness {
            name: name.to_owned(),
            key,
            url: url.map(str::to_owned),
        });
        Ok(())
    }

    /// `group <name> <threshold> <member>...`: members defined before, each once.
    fn add_group(
        &mut self,
        line: usize,
        name: &str,
        threshold: &str,
        members: &[&str],
    ) -> Result<(), PolicyError> {
        let mut resolved = Vec::with_capacity(members.len());
        for member in members {
            if *member == NONE {
                return Err(PolicyError::Member { line });
            }
            let member = self.lookup(member).ok_or(PolicyError::Undefined { line })?;
            if resolved.contains(&member) {
                return Err(PolicyError::Member { line });
            }
            resolved.push(member);
        }
        let threshold = parse_threshold(line, threshold, resolved.len())?;
        if self.groups.len() == MAX_ENTRIES {
            return Err(PolicyError::TooManyEntries { line });
        }
        self.groups.push(Group {
            name: name.to_owned(),
            threshold,
            members: resolved,
        });
        Ok(())
    }

    /// `quorum <name>`: once, naming a witness, a group or `none`.
    fn set_quorum(&mut self, line: usize, name: &str) -> Result<(), PolicyError> {
        if self.quorum.is_some() {
            return Err(PolicyError::SecondQuorum { line });
        }
        let quorum = if name == NONE {
            Member::Nobody
        } else {
            self.lookup(name).ok_or(PolicyError::Undefined { line })?
        };
        self.quorum = Some(quorum);
        Ok(())
    }

    /// A witness or group name must be new, and not `none`.
    fn check_new_name(&self, line: usize, name: &str) -> Result<(), PolicyError> {
        if name == NONE || self.lookup(name).is_some() {
            return Err(PolicyError::Name { line });
        }
        Ok(())
    }

    fn lookup(&self, name: &str) -> Option<Member> {
        if let Some(index) = self.witnesses.iter().position(|w| w.name == name) {
            return Some(Member::Witness(index));
        }
        self.groups
            .iter()
            .position(|g| g.name == name)
            .map(Member::Group)
    }

    fn finish(self) -> Result<Policy, PolicyError> {
        Ok(Policy {
            logs: self.logs,
            witnesses: self.witnesses,
            groups: self.groups,
            quorum: self.quorum.ok_or(PolicyError::NoQuorum)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::Checkpoint;
    use crate::note::{CosignerKey, NoteSigningKey};

    struct World {
        provider: Provider,
        log: NoteSigningKey,
        witnesses: Vec<CosignerKey>,
    }

    fn world(provider: Provider) -> World {
        World {
            provider,
            log: NoteSigningKey::generate(provider, "log.example/v1").unwrap(),
            witnesses: ["x1", "x2", "x3", "y1", "y2", "y3"]
                .iter()
                .map(|name| CosignerKey::generate(provider, &format!("{name}.example")).unwrap())
                .collect(),
        }
    }

    impl World {
        fn vkey(&self, witness: usize) -> String {
            self.witnesses[witness].verifier_key().to_string()
        }

        /// tlog-policy.md's "Example policy", with keys of our own in place of its
        /// elided `<vkey>`s.
        fn spec_example(&self) -> String {
            format!(
                "log {}\n\nwitness X1 {}\nwitness X2 {}\nwitness X3 {}\ngroup X-witnesses 2 X1 X2 X3\n\nwitness Y1 {}\nwitness Y2 {}\nwitness Y3 {}\ngroup Y-witnesses any Y1 Y2 Y3\n\ngroup X-and-Y all X-witnesses Y-witnesses\nquorum X-and-Y\n",
                self.log.verifier_key(),
                self.vkey(0),
                self.vkey(1),
                self.vkey(2),
                self.vkey(3),
                self.vkey(4),
                self.vkey(5),
            )
        }

        fn parse(&self, text: &str) -> Result<Policy, PolicyError> {
            Policy::parse(self.provider, text.as_bytes())
        }

        /// A checkpoint signed by the log and cosigned by the witnesses listed.
        fn checkpoint(&self, cosigners: &[usize]) -> String {
            let checkpoint = Checkpoint {
                origin: "log.example/v1".to_owned(),
                tree_size: 9,
                root_hash: [3; 32],
            };
            let mut note = Note::new(&checkpoint.body()).unwrap();
            note.add_signature(self.log.sign(&note).unwrap()).unwrap();
            for &witness in cosigners {
                note.add_signature(self.witnesses[witness].cosign(&note, 1_000).unwrap())
                    .unwrap();
            }
            note.to_text()
        }
    }

    fn the_spec_example_policy_needs_two_xs_and_one_y(provider: Provider) {
        let world = world(provider);
        let policy = world.parse(&world.spec_example()).unwrap();
        assert_eq!(policy.logs().len(), 1);
        assert_eq!(policy.witnesses().len(), 6);
        assert_eq!(policy.witnesses()[3].name, "Y1");
        let met = |cosigned: [bool; 6]| policy.quorum_met(&cosigned);
        assert!(met([true, true, false, true, false, false]));
        assert!(met([false, true, true, false, false, true]));
        assert!(met([true, true, true, true, true, true]));
        assert!(!met([true, false, false, true, true, true]));
        assert!(!met([true, true, true, false, false, false]));
        assert!(!met([false; 6]));
        // The same through checkpoints and their cosignatures.
        let verified = policy
            .verify_checkpoint(world.checkpoint(&[0, 2, 4]).as_bytes())
            .unwrap();
        assert_eq!(verified.checkpoint.tree_size, 9);
        assert_eq!(verified.cosignatures.len(), 3);
        assert_eq!(
            policy.verify_checkpoint(world.checkpoint(&[0, 3, 4]).as_bytes()),
            Err(PolicyError::QuorumNotMet)
        );
    }

    fn quorum_none_needs_only_the_logs_signature(provider: Provider) {
        let world = world(provider);
        let policy = world
            .parse(&format!("log {}\nquorum none", world.log.verifier_key()))
            .unwrap();
        assert_eq!(
            policy,
            Policy::single_log(world.log.verifier_key()).unwrap()
        );
        policy
            .verify_checkpoint(world.checkpoint(&[]).as_bytes())
            .unwrap();
        // A cosignature of a witness the policy does not know is ignored.
        policy
            .verify_checkpoint(world.checkpoint(&[1]).as_bytes())
            .unwrap();
        assert_eq!(
            Policy::single_log(world.witnesses[0].verifier_key()),
            Err(PolicyError::KeyType { line: 1 })
        );
    }

    fn checkpoints_that_do_not_pass_are_refused(provider: Provider) {
        let world = world(provider);
        let policy = world
            .parse(&format!(
                "log {}\nwitness W {}\nquorum W\n",
                world.log.verifier_key(),
                world.vkey(0)
            ))
            .unwrap();
        policy
            .verify_checkpoint(world.checkpoint(&[0]).as_bytes())
            .unwrap();
        // No cosignature; a tampered one; another log's checkpoint.
        assert_eq!(
            policy.verify_checkpoint(world.checkpoint(&[]).as_bytes()),
            Err(PolicyError::QuorumNotMet)
        );
        let cosigned = world.checkpoint(&[0]);
        let line = cosigned.lines().last().unwrap();
        let encoded = line.rsplit_once(' ').unwrap().1;
        let mut bytes =
            base64::Engine::decode(&base64::engine::general_purpose::STANDARD, encoded).unwrap();
        bytes[20] ^= 1;
        let tampered = cosigned.replace(
            encoded,
            &base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &bytes),
        );
        assert!(matches!(
            policy.verify_checkpoint(tampered.as_bytes()),
            Err(PolicyError::Checkpoint(CheckpointNoteError::Note(
                NoteError::BadSignature { .. }
            )))
        ));
        let other = World {
            log: NoteSigningKey::generate(provider, "log.example/v1").unwrap(),
            ..world
        };
        assert_eq!(
            policy.verify_checkpoint(other.checkpoint(&[0]).as_bytes()),
            Err(PolicyError::Checkpoint(CheckpointNoteError::NotSignedByLog))
        );
    }

    fn comments_blank_lines_tabs_and_urls_are_read(provider: Provider) {
        let world = world(provider);
        let text = format!(
            "# a policy\n\n \t log\t{}  https://log.example/\n  # indented comment \u{e9}\n\twitness W1 {} https://w1.example/\nwitness W2 {}\r\nquorum none",
            world.log.verifier_key(),
            world.vkey(0),
            world.vkey(1),
        );
        // A carriage return is a control character.
        assert_eq!(world.parse(&text), Err(PolicyError::Character { line: 6 }));
        let policy = world.parse(&text.replace('\r', "")).unwrap();
        assert_eq!(
            policy.logs()[0].url.as_deref(),
            Some("https://log.example/")
        );
        assert_eq!(
            policy.witnesses()[0].url.as_deref(),
            Some("https://w1.example/")
        );
        assert_eq!(policy.witnesses()[1].url, None);
        // Comments may hold any octet but control characters.
        let mut latin1 = b"# caf\xe9\n".to_vec();
        latin1.extend_from_slice(
            format!("log {}\nquorum none\n", world.log.verifier_key()).as_bytes(),
        );
        Policy::parse(provider, &latin1).unwrap();
    }

    fn every_rule_of_the_policy_syntax_is_enforced(provider: Provider) {
        let world = world(provider);
        let log = world.log.verifier_key().to_string();
        let w0 = world.vkey(0);
        let w1 = world.vkey(1);
        let same_key_other_name = CosignerKey::from_seed(provider, "renamed.example", &[1; 32])
            .unwrap()
            .verifier_key();
        let same_key = CosignerKey::from_seed(provider, "original.example", &[1; 32])
            .unwrap()
            .verifier_key();
        for (text, error) in [
            (format!("log {log}\n"), PolicyError::NoQuorum),
            (
                format!("log {log}\nquorum none\nquorum none\n"),
                PolicyError::SecondQuorum { line: 3 },
            ),
            (
                format!("logs {log}\nquorum none\n"),
                PolicyError::UnknownKeyword { line: 1 },
            ),
            (
                format!("log {log} url extra\nquorum none\n"),
                PolicyError::Items { line: 1 },
            ),
            (
                "log\nquorum none\n".to_owned(),
                PolicyError::Items { line: 1 },
            ),
            (
                format!("witness W {w0} url extra\nquorum none\n"),
                PolicyError::Items { line: 1 },
            ),
            (
                format!("witness W {w0}\ngroup G any\nquorum none\n"),
                PolicyError::Items { line: 2 },
            ),
            ("quorum\n".to_owned(), PolicyError::Items { line: 1 }),
            (
                format!("log {w0}\nquorum none\n"),
                PolicyError::KeyType { line: 1 },
            ),
            (
                format!("witness W {log}\nquorum none\n"),
                PolicyError::KeyType { line: 1 },
            ),
            (
                format!("log {log}\nlog {log}\nquorum none\n"),
                PolicyError::DuplicateKey { line: 2 },
            ),
            (
                format!("witness A {same_key}\nwitness B {same_key_other_name}\nquorum none\n"),
                PolicyError::DuplicateKey { line: 2 },
            ),
            (
                format!("witness none {w0}\nquorum none\n"),
                PolicyError::Name { line: 1 },
            ),
            (
                format!("witness W {w0}\nwitness W {w1}\nquorum W\n"),
                PolicyError::Name { line: 2 },
            ),
            (
                format!("witness W {w0}\ngroup W any W\nquorum W\n"),
                PolicyError::Name { line: 2 },
            ),
            (
                format!("witness W {w0}\ngroup none any W\nquorum none\n"),
                PolicyError::Name { line: 2 },
            ),
            (
                format!("group G any W\nwitness W {w0}\nquorum G\n"),
                PolicyError::Undefined { line: 1 },
            ),
            (
                format!("witness W {w0}\ngroup G any G\nquorum G\n"),
                PolicyError::Undefined { line: 2 },
            ),
            (
                format!("quorum W\nwitness W {w0}\n"),
                PolicyError::Undefined { line: 1 },
            ),
            (
                format!("witness W {w0}\ngroup G any W W\nquorum G\n"),
                PolicyError::Member { line: 2 },
            ),
            (
                format!("witness W {w0}\ngroup G any none\nquorum G\n"),
                PolicyError::Member { line: 2 },
            ),
            (
                format!("witness W {w0}\ngroup G 0 W\nquorum G\n"),
                PolicyError::Threshold { line: 2 },
            ),
            (
                format!("witness W {w0}\ngroup G 2 W\nquorum G\n"),
                PolicyError::Threshold { line: 2 },
            ),
            (
                format!("witness W {w0}\ngroup G 01 W\nquorum G\n"),
                PolicyError::Threshold { line: 2 },
            ),
            (
                format!("witness W {w0}\ngroup G some W\nquorum G\n"),
                PolicyError::Threshold { line: 2 },
            ),
            (
                // Decimal digits only: Rust's integer parser takes a sign.
                format!("witness W {w0}\ngroup G +1 W\nquorum G\n"),
                PolicyError::Threshold { line: 2 },
            ),
            (
                "quorum none\n\x01\n".to_owned(),
                PolicyError::Character { line: 2 },
            ),
            (
                "quorum none\x7f\n".to_owned(),
                PolicyError::Character { line: 1 },
            ),
        ] {
            assert_eq!(world.parse(&text), Err(error), "{text}");
        }
        assert!(matches!(
            world.parse("log example.com+00000000+AAAA\nquorum none\n"),
            Err(PolicyError::VerifierKey { line: 1, .. })
        ));
        assert_eq!(
            Policy::parse(provider, b"witness W\xff x\nquorum none\n"),
            Err(PolicyError::NotUtf8 { line: 1 })
        );
        let huge = vec![b'#'; MAX_POLICY_BYTES + 1];
        assert_eq!(Policy::parse(provider, &huge), Err(PolicyError::TooLarge));
    }

    fn a_policy_holds_up_to_its_limit_of_witnesses(provider: Provider) {
        let mut text = String::new();
        for i in 0..=MAX_ENTRIES {
            let key = CosignerKey::from_seed(
                provider,
                "w.example",
                &[
                    i as u8,
                    (i >> 8) as u8,
                    7,
                    7,
                    7,
                    7,
                    7,
                    7,
                    7,
                    7,
                    7,
                    7,
                    7,
                    7,
                    7,
                    7,
                    7,
                    7,
                    7,
                    7,
                    7,
                    7,
                    7,
                    7,
                    7,
                    7,
                    7,
                    7,
                    7,
                    7,
                    7,
                    7,
                ],
            )
            .unwrap()
            .verifier_key();
            text.push_str(&format!("witness W{i} {key}\n"));
        }
        let allowed: String = text
            .lines()
            .take(MAX_ENTRIES)
            .map(|l| format!("{l}\n"))
            .collect();
        Policy::parse(provider, format!("{allowed}quorum W0\n").as_bytes()).unwrap();
        assert_eq!(
            Policy::parse(provider, format!("{text}quorum W0\n").as_bytes()),
            Err(PolicyError::TooManyEntries {
                line: MAX_ENTRIES + 1
            })
        );
    }

    crate::tests_for_every_provider!(
        the_spec_example_policy_needs_two_xs_and_one_y,
        quorum_none_needs_only_the_logs_signature,
        checkpoints_that_do_not_pass_are_refused,
        comments_blank_lines_tabs_and_urls_are_read,
        every_rule_of_the_policy_syntax_is_enforced,
        a_policy_holds_up_to_its_limit_of_witnesses,
    );
}
