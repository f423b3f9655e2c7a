//! Views of a plan: numbered text for a person (`text`), Graphviz DOT
//! (`dot`), and JSON for programs (`json`). All three are functions of the
//! plan alone, so `plan show` gives the same output for an image and for the
//! plan compiled from it.

mod dot;
mod json;
mod text;
mod wording;
