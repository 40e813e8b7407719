//! `invoke`, a call of one export: the call expression parsed into the export's
//! name and its WAVE arguments ([`parse_call`]), why a call does not fit its
//! guest ([`InvokeError`], checked by [`super::core`] and [`super::component`]
//! against their types), and the return values rendered in WAVE within
//! `max_output_bytes`.
//!
//! Pure: text in, values or a verdict out.

use wasmtime::component::wasm_wave::parser::ParserError;
use wasmtime::component::wasm_wave::untyped::UntypedFuncCall;
use wasmtime::component::wasm_wave::wasm::WasmValue;
use wasmtime::component::wasm_wave::writer::Writer;

/// Why an `invoke` does not call its guest (status `invalid_request`).
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    /// There is no `(`: not a call.
    #[error("`invoke` must be a call expression such as `add(1, 2)`")]
    NotACall,
    /// Nothing before the `(`.
    #[error("`invoke` names no function before `(`")]
    NoName,
    /// The argument list is not WAVE.
    #[error("`invoke` is not a WAVE call expression: {0}")]
    NotWave(ParserError),
    /// The export exists but is not a function.
    #[error("the export `{name}` is not a function")]
    NotAFunction { name: String },
    /// A core module has no export of that name.
    #[error("the module has no export named `{name}`")]
    NoModuleExport { name: String },
    /// A core module's export takes or returns a type `invoke` cannot pass.
    #[error(
        "`{name}` takes or returns a type other than i32, i64, f32 and f64, which \
         `invoke` cannot pass to a core module"
    )]
    NotNumeric { name: String },
    /// The arguments do not parse as a core function's parameter types.
    #[error("the arguments do not fit `{name}`'s parameters {types:?}: {error}")]
    ModuleArguments {
        name: String,
        types: Vec<wasmtime::ValType>,
        error: ParserError,
    },
    /// The arguments do not parse as a component function's parameter types.
    #[error("the arguments do not fit `{name}({})`: {error}", .params.join(", "))]
    ComponentArguments {
        name: String,
        /// The parameters' names.
        params: Vec<String>,
        error: ParserError,
    },
    /// `interface#function` names an interface the component does not export.
    #[error("the component exports no interface `{interface}`")]
    NoInterface { interface: String },
    /// `interface#function` names a function the interface does not have.
    #[error("`{interface}` has no function `{function}`")]
    NoInterfaceFunction { interface: String, function: String },
    /// A bare name that is neither a top-level export nor in any interface.
    #[error("the component exports no function named `{name}`")]
    NoComponentFunction { name: String },
    /// A bare name found in more than one exported interface.
    #[error("`{name}` is exported by several interfaces; name one of: {}", .candidates.join(", "))]
    Ambiguous {
        name: String,
        /// The full names it could mean, `interface#name`.
        candidates: Vec<String>,
    },
}

/// Splits an `invoke` expression into the export's name and its WAVE arguments.
///
/// WAVE parses the whole call, but its names are kebab-case labels, and exports
/// are often not: `_start`, `add_one`, `example:app/api#greet`. So the name is
/// everything before the first `(`, and only the argument list goes to WAVE.
/// Public for the fuzz target `wave_invoke`.
pub fn parse_call(expression: &str) -> Result<(String, UntypedFuncCall<'static>), InvokeError> {
    let expression = expression.trim();
    let open = expression.find('(').ok_or(InvokeError::NotACall)?;
    let name = expression[..open].trim();
    if name.is_empty() {
        return Err(InvokeError::NoName);
    }
    let arguments = format!("f{}", &expression[open..]);
    let call = UntypedFuncCall::parse(&arguments)
        .map_err(InvokeError::NotWave)?
        .into_owned();
    Ok((name.to_owned(), call))
}

/// The return values in WAVE, `max_output_bytes` for all of them together:
/// `None` if they need more. Each encoding stops as soon as it passes the room
/// left, so a huge return value costs the host no more than that in text.
pub(crate) fn render_returns<V: WasmValue>(
    values: &[V],
    max_output_bytes: usize,
) -> Option<Vec<String>> {
    let mut room = max_output_bytes;
    let mut returns = Vec::with_capacity(values.len());
    for value in values {
        let text = wave(value, room)?;
        room -= text.len();
        returns.push(text);
    }
    Some(returns)
}

/// A value in WAVE, the `returns` encoding, in at most `room` bytes: `None` if
/// it needs more.
fn wave(value: &impl WasmValue, room: usize) -> Option<String> {
    /// A string that refuses to grow past its room.
    struct Capped {
        text: String,
        room: usize,
    }
    impl std::fmt::Write for Capped {
        fn write_str(&mut self, piece: &str) -> std::fmt::Result {
            if self.text.len() + piece.len() > self.room {
                return Err(std::fmt::Error);
            }
            self.text.push_str(piece);
            Ok(())
        }
    }
    let mut capped = Capped {
        text: String::new(),
        room,
    };
    let mut writer = Writer::new(&mut capped);
    match writer.write_value(value) {
        Ok(()) => Some(capped.text),
        Err(_) if capped.text.len() + 64 > room => None,
        Err(error) => Some(format!("<not encodable in WAVE: {error}>")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::component::Val;

    #[test]
    fn invoke_names_need_not_be_wave_labels() {
        for (expression, name) in [
            ("add(1, 2)", "add"),
            ("_start()", "_start"),
            (" add_one (1) ", "add_one"),
            ("example:app/api#greet(\"x\")", "example:app/api#greet"),
        ] {
            assert_eq!(parse_call(expression).unwrap().0, name, "{expression}");
        }
        for bad in ["add", "(1)", "add(1", "add(1))", "add(,)"] {
            assert!(parse_call(bad).is_err(), "{bad}");
        }
    }

    /// The refusal of `expression`, as the client reads it.
    fn refusal(expression: &str) -> String {
        match parse_call(expression) {
            Ok(_) => panic!("{expression} parsed"),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn refusals_read_as_before() {
        assert_eq!(
            refusal("add"),
            "`invoke` must be a call expression such as `add(1, 2)`"
        );
        assert_eq!(refusal(" (1)"), "`invoke` names no function before `(`");
        assert!(refusal("add(1").starts_with("`invoke` is not a WAVE call expression: "));
        let ambiguous = InvokeError::Ambiguous {
            name: "greet".into(),
            candidates: vec!["a:b/c#greet".into(), "a:b/d#greet".into()],
        };
        assert_eq!(
            ambiguous.to_string(),
            "`greet` is exported by several interfaces; name one of: a:b/c#greet, a:b/d#greet"
        );
        let (_, call) = parse_call("f(1)").unwrap();
        let error = call.to_wasm_params::<Val>(&[]).unwrap_err();
        let wave_error = error.to_string();
        let arguments = InvokeError::ComponentArguments {
            name: "add".into(),
            params: vec!["a".into(), "b".into()],
            error,
        };
        assert_eq!(
            arguments.to_string(),
            format!("the arguments do not fit `add(a, b)`: {wave_error}")
        );
        assert_eq!(
            InvokeError::NotNumeric { name: "f".into() }.to_string(),
            "`f` takes or returns a type other than i32, i64, f32 and f64, which `invoke` \
             cannot pass to a core module"
        );
    }

    #[test]
    fn return_values_share_one_room() {
        let values = [Val::U32(12345), Val::U32(678)];
        assert_eq!(
            render_returns(&values, 8),
            Some(vec!["12345".to_owned(), "678".to_owned()])
        );
        assert_eq!(render_returns(&values, 7), None);
        let long = [Val::String("x".repeat(1000))];
        assert_eq!(render_returns(&long, 100), None);
    }
}
