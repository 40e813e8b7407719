//! Every path of a mount in path-byte order, for `mounts_out`: [`walk_sorted`]
//! holds only the current path's directories, never the whole listing.

use std::ops::ControlFlow;

use super::node::{Node, lock};
use super::{MAX_PATH_BYTES, Mounts};

impl Mounts {
    /// Every file and directory under a mount's root (the root not listed), with
    /// its path from the root, sorted by path bytes (a parent before its
    /// children). Paths longer than [`MAX_PATH_BYTES`] are left out, and what is
    /// under them: a guest can nest deeper through directory descriptors, and
    /// listing every path of a deep chain would take memory quadratic in its depth.
    pub fn walk_mount(&self, mount: u32) -> Vec<(Vec<u8>, Node)> {
        let mut out = Vec::new();
        if let Some(mount) = self.mounts.get(mount as usize) {
            walk_sorted(&mount.root, |path, node| {
                out.push((path.to_vec(), node.clone()));
                ControlFlow::Continue(())
            });
        }
        out
    }
}

/// One step of [`walk_sorted`] in a directory: a child itself, or (for a
/// directory) what is under it, whose paths all start with `name/`.
struct Step {
    name: Box<[u8]>,
    node: Node,
    under: bool,
}

impl Step {
    /// Where its paths sort among its siblings': at `name` for the child, at
    /// `name/` for what is under it.
    fn key(&self) -> impl Iterator<Item = &u8> {
        self.name.iter().chain(self.under.then_some(&b'/'))
    }
}

/// A directory's children as [`walk_sorted`]'s steps, in its order; nothing for
/// a file or a removed directory.
fn steps(dir: &Node) -> Vec<Step> {
    let children: Vec<(Box<[u8]>, Node)> = match dir {
        Node::Image {
            image,
            index,
            ino_base,
        } => image
            .children(*index)
            .into_iter()
            .flatten()
            .map(|child| {
                let node = Node::Image {
                    image: image.clone(),
                    index: child,
                    ino_base: *ino_base,
                };
                (image.name(child).into(), node)
            })
            .collect(),
        Node::Dir(dir) => {
            let data = lock(&dir.data);
            if data.removed {
                return Vec::new();
            }
            data.entries
                .iter()
                .map(|(name, node)| (name.clone(), node.clone()))
                .collect()
        }
        Node::File(_) => return Vec::new(),
    };
    let mut steps = Vec::with_capacity(children.len() * 2);
    for (name, node) in children {
        if node.is_dir() {
            steps.push(Step {
                name: name.clone(),
                node: node.clone(),
                under: true,
            });
        }
        steps.push(Step {
            name,
            node,
            under: false,
        });
    }
    steps.sort_by(|a, b| a.key().cmp(b.key()));
    steps
}

/// Calls `visit` with every file and directory under `root` (the root not
/// listed) and its path from the root, in the order of path bytes (a parent
/// before its children), leaving out paths longer than [`MAX_PATH_BYTES`] and
/// what is under them, as [`Mounts::walk_mount`] lists them; without holding
/// every path at once. A depth-first walk gives that order if, among siblings,
/// a directory's subtree is placed where `name/` sorts, not where `name` does
/// (`b-c` comes between `b` and `b/a`): so the walk holds, for each directory
/// on the current path, its remaining children and one path buffer, never the
/// whole listing. `visit` may stop the walk. Read-only: for a tree nothing
/// changes any more (a guest that has ended).
pub(crate) fn walk_sorted(root: &Node, mut visit: impl FnMut(&[u8], &Node) -> ControlFlow<()>) {
    let mut path: Vec<u8> = Vec::new();
    // Each level: its remaining steps (reversed, to pop), and the length of its
    // directory's path with the `/` after it (0 at the root).
    let mut levels: Vec<(Vec<Step>, usize)> = vec![(reversed(steps(root)), 0)];
    while let Some((pending, prefix)) = levels.last_mut() {
        let prefix = *prefix;
        let Some(step) = pending.pop() else {
            levels.pop();
            continue;
        };
        path.truncate(prefix);
        path.extend_from_slice(&step.name);
        if path.len() > MAX_PATH_BYTES {
            continue;
        }
        if step.under {
            path.push(b'/');
            levels.push((reversed(steps(&step.node)), path.len()));
        } else if visit(&path, &step.node).is_break() {
            return;
        }
    }
}

/// `items` in reverse order, to pop from the front.
fn reversed<T>(mut items: Vec<T>) -> Vec<T> {
    items.reverse();
    items
}
