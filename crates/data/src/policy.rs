//! What to do with a file that cannot give a clip: users' folders hold stray files, and whether one bad file
//! should stop a fine-tune or just be left out is the user's call, not ours.

/// Skip the file with a warning, or refuse the whole dataset with an error naming it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnProblem {
    #[default]
    Skip,
    Refuse,
}

/// One choice for unreadable or uncaptioned files, one for videos too short for a clip (a short video is a
/// fine file, so a user may want those skipped while still refusing broken ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Policy {
    /// Not an MP4, truncated or undecodable, zero frames, missing, unreadable or empty caption.
    pub bad_file: OnProblem,
    /// Fewer frames at the target frame rate than a clip needs.
    pub too_short: OnProblem,
}

impl Policy {
    /// Every problem skipped with a warning.
    pub fn skip_all() -> Self {
        Self {
            bad_file: OnProblem::Skip,
            too_short: OnProblem::Skip,
        }
    }

    /// Every problem refused with an error.
    pub fn refuse_all() -> Self {
        Self {
            bad_file: OnProblem::Refuse,
            too_short: OnProblem::Refuse,
        }
    }
}
