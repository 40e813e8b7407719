//! The shape check a module passes before it is compiled: function bodies, locals
//! and nesting within bounds that real programs stay far below and compiler bombs
//! do not.
//!
//! Cranelift's cost is not linear in a module's size: a 10.9 KB function of a
//! thousand nested `loop`s reading two thousand locals took 11 s and 660 MB to
//! compile. The worker process bounds any compilation in time and memory (see
//! [`super::compiler`]); this check refuses the known shapes of such modules in one
//! linear pass, before the compiler sees them, and names what is wrong.
//!
//! The first two bounds are the JavaScript API's implementation limits, which every
//! browser enforces, so a module that runs on the web passes them. The nesting
//! bounds are ours: loops nest as deep as source-level loops do (a handful), and
//! blocks as deep as a `switch` has cases.
//!
//! Pure: bytes in, a verdict out.

use wasmparser::{Operator, Parser, Payload};

/// Bytes of one function body (the JS API's limit).
pub(crate) const MAX_FUNCTION_BODY_BYTES: usize = 7_654_321;
/// Locals of one function, parameters excluded (the JS API's limit).
pub(crate) const MAX_FUNCTION_LOCALS: u64 = 50_000;
/// Control instructions (`block`, `loop`, `if`, `try_table`) open at once in one
/// function. A C `switch` of N cases compiles to N nested blocks.
pub(crate) const MAX_CONTROL_NESTING: usize = 10_000;
/// `loop`s open at once in one function.
pub(crate) const MAX_LOOP_NESTING: usize = 256;
/// Locals times the deepest loop nesting of one function: the variables the
/// compiler's SSA construction may have to carry through every loop header.
/// Measured here (debug build, loaded machine): 2,000 locals in 64 nested loops
/// (128,000) compile in 2.6 s, 3,900 in 256 (about 1,000,000) in 32 s, 50,000 in
/// 16 (800,000) in 220 s. Optimised compilers emit hundreds of locals and loops a
/// few deep (thousands); this bound leaves room for unoptimised code, and the
/// worker's CPU bound catches whatever passes it.
pub(crate) const MAX_LOCALS_TIMES_LOOP_NESTING: u64 = 250_000;

/// Why a module was refused before compilation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShapeError {
    /// The binary does not parse.
    #[error("the binary does not parse: {0}")]
    Malformed(String),
    /// A function body is larger than [`MAX_FUNCTION_BODY_BYTES`].
    #[error(
        "function {index} has a body of {bytes} bytes; at most {MAX_FUNCTION_BODY_BYTES} are allowed"
    )]
    BodyTooLarge { index: usize, bytes: usize },
    /// A function declares more than [`MAX_FUNCTION_LOCALS`] locals.
    #[error("function {index} declares {locals} locals; at most {MAX_FUNCTION_LOCALS} are allowed")]
    TooManyLocals { index: usize, locals: u64 },
    /// Control instructions nest deeper than [`MAX_CONTROL_NESTING`].
    #[error(
        "function {index} nests control instructions {depth} deep; at most {MAX_CONTROL_NESTING} are allowed"
    )]
    NestedTooDeep { index: usize, depth: usize },
    /// Loops nest deeper than [`MAX_LOOP_NESTING`].
    #[error("function {index} nests loops {depth} deep; at most {MAX_LOOP_NESTING} are allowed")]
    LoopsNestedTooDeep { index: usize, depth: usize },
    /// Locals times loop nesting is above [`MAX_LOCALS_TIMES_LOOP_NESTING`].
    #[error(
        "function {index} has {locals} locals inside loops nested {depth} deep; locals times \
         loop depth may be at most {MAX_LOCALS_TIMES_LOOP_NESTING}"
    )]
    TooCostly {
        index: usize,
        locals: u64,
        depth: usize,
    },
}

/// Checks every function body of a core module or of every core module inside a
/// component. `index` in an error counts bodies in binary order.
pub(crate) fn check(bytes: &[u8]) -> Result<(), ShapeError> {
    let malformed = |error: wasmparser::BinaryReaderError| ShapeError::Malformed(error.to_string());
    let mut index = 0;
    for payload in Parser::new(0).parse_all(bytes) {
        if let Payload::CodeSectionEntry(body) = payload.map_err(malformed)? {
            check_body(index, &body).map_err(|error| match error {
                BodyError::Shape(shape) => shape,
                BodyError::Parse(parse) => malformed(parse),
            })?;
            index += 1;
        }
    }
    Ok(())
}

enum BodyError {
    Shape(ShapeError),
    Parse(wasmparser::BinaryReaderError),
}

impl From<wasmparser::BinaryReaderError> for BodyError {
    fn from(error: wasmparser::BinaryReaderError) -> Self {
        BodyError::Parse(error)
    }
}

impl From<ShapeError> for BodyError {
    fn from(error: ShapeError) -> Self {
        BodyError::Shape(error)
    }
}

fn check_body(index: usize, body: &wasmparser::FunctionBody<'_>) -> Result<(), BodyError> {
    let bytes = body.range().len();
    if bytes > MAX_FUNCTION_BODY_BYTES {
        return Err(ShapeError::BodyTooLarge { index, bytes }.into());
    }
    let mut locals: u64 = 0;
    for group in body.get_locals_reader()? {
        let (count, _ty) = group?;
        locals = locals.saturating_add(u64::from(count));
        if locals > MAX_FUNCTION_LOCALS {
            return Err(ShapeError::TooManyLocals { index, locals }.into());
        }
    }
    // The open control instructions, innermost last: whether each is a loop.
    let mut open: Vec<bool> = Vec::new();
    let mut loops = 0usize;
    let mut deepest_loops = 0usize;
    let mut operators = body.get_operators_reader()?;
    while !operators.eof() {
        match operators.read()? {
            Operator::Block { .. }
            | Operator::If { .. }
            | Operator::TryTable { .. }
            | Operator::Try { .. } => open.push(false),
            Operator::Loop { .. } => {
                open.push(true);
                loops += 1;
                deepest_loops = deepest_loops.max(loops);
                if loops > MAX_LOOP_NESTING {
                    return Err(ShapeError::LoopsNestedTooDeep {
                        index,
                        depth: loops,
                    }
                    .into());
                }
                let cost = locals.saturating_mul(loops as u64);
                if cost > MAX_LOCALS_TIMES_LOOP_NESTING {
                    return Err(ShapeError::TooCostly {
                        index,
                        locals,
                        depth: loops,
                    }
                    .into());
                }
            }
            Operator::End => loops -= usize::from(open.pop() == Some(true)),
            _ => {}
        }
        if open.len() > MAX_CONTROL_NESTING {
            return Err(ShapeError::NestedTooDeep {
                index,
                depth: open.len(),
            }
            .into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A function with `locals` i32 locals inside `depth` nested loops, each loop
    /// reading every local: the shape of the compiler bomb.
    pub(crate) fn nested_loops(depth: usize, locals: usize) -> Vec<u8> {
        let mut body = String::new();
        for _ in 0..depth {
            body.push_str("loop ");
        }
        for local in 0..locals {
            body.push_str(&format!("local.get {local} drop "));
        }
        for _ in 0..depth {
            body.push_str("end ");
        }
        wat::parse_str(format!(
            "(module (func (local {}) {body}) (export \"_start\" (func 0)))",
            "i32 ".repeat(locals)
        ))
        .unwrap()
    }

    #[test]
    fn ordinary_modules_pass() {
        check(&nested_loops(4, 100)).unwrap();
        check(&wat::parse_str("(module)").unwrap()).unwrap();
        check(include_bytes!("../../../../examples/hello.wasm")).unwrap();
        check(include_bytes!("../../../../examples/hello.component.wasm")).unwrap();
    }

    #[test]
    fn the_compiler_bomb_is_refused_by_its_shape() {
        // The adversarial review's module: 11 s and 660 MB to compile.
        let error = check(&nested_loops(1_000, 2_000)).unwrap_err();
        assert!(
            matches!(error, ShapeError::TooCostly { depth: 126, .. }),
            "{error}"
        );
        // Within the nesting bound, too many locals in the loops.
        let error = check(&nested_loops(64, 4_000)).unwrap_err();
        assert!(matches!(error, ShapeError::TooCostly { .. }), "{error}");
        assert!(
            error.to_string().contains("locals times loop depth"),
            "{error}"
        );
        check(&nested_loops(64, 3_900)).unwrap();
    }

    #[test]
    fn each_bound_names_itself() {
        assert!(matches!(
            check(&nested_loops(MAX_LOOP_NESTING + 1, 0)),
            Err(ShapeError::LoopsNestedTooDeep { depth: 257, .. })
        ));
        let blocks = "block ".repeat(MAX_CONTROL_NESTING + 1);
        let ends = "end ".repeat(MAX_CONTROL_NESTING + 1);
        let deep = wat::parse_str(format!("(module (func {blocks}{ends}))")).unwrap();
        assert!(matches!(
            check(&deep),
            Err(ShapeError::NestedTooDeep { depth: 10_001, .. })
        ));
        let many_locals =
            wat::parse_str(format!("(module (func (local {})))", "i32 ".repeat(50_001))).unwrap();
        assert!(matches!(
            check(&many_locals),
            Err(ShapeError::TooManyLocals { locals: 50_001, .. })
        ));
        assert!(matches!(
            check(b"\0asm\x01\0\0\0\x0a\x05"),
            Err(ShapeError::Malformed(_))
        ));
    }
}
