//! Path resolution, confined to the base descriptor: a path is checked and split
//! ([`parse`]), then walked from the base with `..` never above it.

use std::sync::Arc;

use super::node::{Kind, MemDir, Node, lock};
use super::{MAX_NAME_BYTES, MAX_PATH_BYTES, Mounts};
use crate::sandbox::fs::FsErr;

/// A path split into components, checked: relative, ≤ 4,096 bytes, components
/// ≤ 255 bytes, no NUL. Empty components are skipped (`a//b` is `a/b`).
pub(super) struct ParsedPath<'a> {
    pub(super) components: Vec<&'a [u8]>,
    pub(super) trailing_slash: bool,
}

/// `path` checked and split into its components.
pub(super) fn parse(path: &str) -> Result<ParsedPath<'_>, FsErr> {
    if path.is_empty() {
        return Err(FsErr::NoEntry);
    }
    if path.len() > MAX_PATH_BYTES {
        return Err(FsErr::NameTooLong);
    }
    if path.starts_with('/') {
        return Err(FsErr::NotPermitted);
    }
    if path.contains('\0') {
        return Err(FsErr::Invalid);
    }
    let mut components = Vec::new();
    for component in path.as_bytes().split(|&b| b == b'/') {
        if component.is_empty() {
            continue;
        }
        if component.len() > MAX_NAME_BYTES {
            return Err(FsErr::NameTooLong);
        }
        components.push(component);
    }
    Ok(ParsedPath {
        components,
        trailing_slash: path.ends_with('/'),
    })
}

/// Whether `component` is `.` or `..`.
pub(super) fn is_dot(component: &[u8]) -> bool {
    component == b"." || component == b".."
}

impl Mounts {
    /// The child `name` of directory `node`.
    pub(super) fn child(&self, node: &Node, name: &[u8]) -> Result<Node, FsErr> {
        match node {
            Node::Image {
                image,
                index,
                ino_base,
            } => match image.kind(*index) {
                Kind::File => Err(FsErr::NotDirectory),
                Kind::Dir => image
                    .lookup(*index, name)
                    .map(|index| Node::Image {
                        image: image.clone(),
                        index,
                        ino_base: *ino_base,
                    })
                    .ok_or(FsErr::NoEntry),
            },
            Node::Dir(dir) => {
                let data = lock(&dir.data);
                if data.removed {
                    return Err(FsErr::NoEntry);
                }
                data.entries.get(name).cloned().ok_or(FsErr::NoEntry)
            }
            Node::File(_) => Err(FsErr::NotDirectory),
        }
    }

    /// Walks `components` from `base` with a stack: `..` pops, and popping past
    /// `base` is `NotPermitted` (confinement to the base descriptor).
    pub(super) fn walk(&self, base: &Node, components: &[&[u8]]) -> Result<Node, FsErr> {
        let mut stack = vec![base.clone()];
        for component in components {
            match *component {
                b"." => {
                    if !stack.last().is_some_and(Node::is_dir) {
                        return Err(FsErr::NotDirectory);
                    }
                }
                b".." => {
                    if stack.len() == 1 {
                        return Err(FsErr::NotPermitted);
                    }
                    stack.pop();
                }
                name => {
                    let top = stack.last().expect("never empty");
                    let next = self.child(top, name)?;
                    stack.push(next);
                }
            }
        }
        Ok(stack.pop().expect("never empty"))
    }

    /// The node `path` names from `base`.
    pub fn lookup(&self, base: &Node, path: &str) -> Result<Node, FsErr> {
        let parsed = parse(path)?;
        let node = self.walk(base, &parsed.components)?;
        if parsed.trailing_slash && !node.is_dir() {
            return Err(FsErr::NotDirectory);
        }
        Ok(node)
    }

    /// The directory that holds the last component of `path`, and that
    /// component (never `.` or `..`: those are `Invalid` here).
    pub(super) fn parent<'p>(&self, base: &Node, path: &'p str) -> Result<(Node, &'p [u8]), FsErr> {
        let parsed = parse(path)?;
        let Some((last, parents)) = parsed.components.split_last() else {
            return Err(FsErr::Invalid);
        };
        if is_dot(last) {
            return Err(FsErr::Invalid);
        }
        let parent = self.walk(base, parents)?;
        if !parent.is_dir() {
            return Err(FsErr::NotDirectory);
        }
        Ok((parent, last))
    }

    /// `node` as a writable mount's directory.
    pub(super) fn mem_dir(node: &Node) -> Result<&Arc<MemDir>, FsErr> {
        match node {
            Node::Dir(dir) => Ok(dir),
            // Image nodes are only in read-only mounts.
            Node::Image { .. } => Err(FsErr::ReadOnly),
            Node::File(_) => Err(FsErr::NotDirectory),
        }
    }
}
