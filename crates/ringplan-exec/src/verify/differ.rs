//! [`Differ`]: one object's differences, each line naming the object.

/// Collects the differences of one object, each naming it.
pub(super) struct Differ<'a> {
    pub(super) name: &'a str,
    pub(super) differences: &'a mut Vec<String>,
}

impl Differ<'_> {
    /// The object's name, as differences start.
    pub(super) fn name(&self) -> &str {
        self.name
    }

    pub(super) fn differ(&mut self, what: &str, want: String, got: String) {
        self.differences
            .push(format!("{}: {what} is {got}, expected {want}", self.name));
    }

    /// Notes `what` as differing, both values shown as `Debug`, unless
    /// they are equal.
    pub(super) fn differ_if_not_equal<T: PartialEq + std::fmt::Debug>(
        &mut self,
        what: &str,
        want: &T,
        got: &T,
    ) {
        if want != got {
            self.differ(what, format!("{want:?}"), format!("{got:?}"));
        }
    }
}
