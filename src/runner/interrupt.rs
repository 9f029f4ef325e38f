//! An error met after the user interrupted a step is that interrupt.

use crate::cancel::Cancel;
use crate::error::Error;

/// What a step that ended with `error` says: that it was interrupted, if it
/// was, since an unpack or a tool cut short by the interrupt says less.
pub fn interrupted_or(cancel: &Cancel, step: &str, error: Error) -> Error {
    match cancel.is_set() {
        true => Error::Interrupted {
            step: step.to_string(),
        },
        false => error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_after_the_interrupt_is_the_interrupt() {
        let cancel = Cancel::default();
        let other = || Error::Usage("the unpack stopped".into());
        assert!(matches!(
            interrupted_or(&cancel, "s", other()),
            Error::Usage(_)
        ));
        cancel.set();
        assert!(matches!(
            interrupted_or(&cancel, "s", other()),
            Error::Interrupted { step } if step == "s"
        ));
    }
}
