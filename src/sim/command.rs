//! The REST commands the simulator serves: their paths, names, admin-refusal codes and rate
//! classes.

/// The REST commands the simulator serves. To add one: a variant (also in `ALL`), its path in
/// `path`, its admin-refusal code, its rate class in `batch_limited`, and a handler in
/// `Sim::dispatch` (`server`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Command {
    PortraitSet,
    PortraitGet,
    AccountImport,
    MultiaccountImport,
    AccountCheck,
}

impl Command {
    pub(super) const ALL: [Command; 5] = [
        Command::PortraitSet,
        Command::PortraitGet,
        Command::AccountImport,
        Command::MultiaccountImport,
        Command::AccountCheck,
    ];

    pub(super) fn from_path(path: &str) -> Option<Command> {
        Command::ALL
            .into_iter()
            .find(|command| command.path() == path)
    }

    pub(super) fn path(self) -> &'static str {
        match self {
            Command::PortraitSet => "/v4/profile/portrait_set",
            Command::PortraitGet => "/v4/profile/portrait_get",
            Command::AccountImport => "/v4/im_open_login_svc/account_import",
            Command::MultiaccountImport => "/v4/im_open_login_svc/multiaccount_import",
            Command::AccountCheck => "/v4/im_open_login_svc/account_check",
        }
    }

    /// The key used in [`super::SimStats`]: the last path segment.
    pub(super) fn name(self) -> &'static str {
        let path = self.path();
        path.rsplit('/').next().unwrap_or(path)
    }

    /// Each service refuses a non-admin identifier with its own code (spec §1.6, §2.4, §5).
    pub(super) fn not_admin_code(self) -> u32 {
        match self {
            Command::PortraitSet | Command::PortraitGet => 40004,
            Command::AccountImport | Command::MultiaccountImport | Command::AccountCheck => 70403,
        }
    }

    /// The 100/s APIs (spec §1.5); the others are 200/s.
    pub(super) fn batch_limited(self) -> bool {
        matches!(self, Command::MultiaccountImport | Command::AccountCheck)
    }

    /// Profile-service answers carry `ErrorDisplay`; account-service answers do not.
    pub(super) fn error_display(self) -> bool {
        matches!(self, Command::PortraitSet | Command::PortraitGet)
    }
}
