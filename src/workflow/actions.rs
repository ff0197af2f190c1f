//! The action catalogue as workflows name it. Every action lives in its own file under
//! `crate::actions` (its parameters, how they are read, its outputs, its step and its effect);
//! these names stay for the readers of workflows (`check`, `plan`, `order setup`).

pub use crate::actions::pocket_order::{Payout, PocketOrder};
pub use crate::actions::{Action, ActionReader, Condition, NAMES, Param, outputs};
