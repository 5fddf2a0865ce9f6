//! Mail files on disk: mbox and Maildir readers and writers (format only, no
//! storage), and the mapping of their flags and folder roles to ours. Used by
//! `roost import` and `roost export`.

pub mod maildir;
pub mod mbox;

use roost_core::model::{Flag, SpecialUse};

/// The `$Forwarded` keyword (RFC 5788 registry), Maildir's `P` flag.
pub const FORWARDED: &str = "$Forwarded";

/// Our flags for mbox Status/X-Status flags. `\Recent` is session state and
/// not stored.
pub fn flags_from_mbox(f: &mbox::Flags) -> Vec<Flag> {
    let mut out = Vec::new();
    for (set, flag) in [
        (f.seen, Flag::seen()),
        (f.answered, Flag::answered()),
        (f.flagged, Flag::flagged()),
        (f.draft, Flag::draft()),
        (f.deleted, Flag::deleted()),
    ] {
        if set {
            out.push(flag);
        }
    }
    out
}

/// mbox flags for our flags, and the flags mbox cannot carry (keywords).
pub fn flags_to_mbox(flags: &[Flag]) -> (mbox::Flags, Vec<Flag>) {
    let mut f = mbox::Flags::default();
    let mut lost = Vec::new();
    for flag in flags {
        match flag.as_str() {
            "\\Seen" => f.seen = true,
            "\\Answered" => f.answered = true,
            "\\Flagged" => f.flagged = true,
            "\\Draft" => f.draft = true,
            "\\Deleted" => f.deleted = true,
            _ => lost.push(flag.clone()),
        }
    }
    (f, lost)
}

/// Our flags for Maildir info flags (`P` is `$Forwarded`).
pub fn flags_from_maildir(f: &maildir::MaildirFlags) -> Vec<Flag> {
    let mut out = Vec::new();
    for (set, flag) in [
        (f.seen, Some(Flag::seen())),
        (f.answered, Some(Flag::answered())),
        (f.flagged, Some(Flag::flagged())),
        (f.draft, Some(Flag::draft())),
        (f.deleted, Some(Flag::deleted())),
        (f.forwarded, Flag::parse(FORWARDED)),
    ] {
        if let (true, Some(flag)) = (set, flag) {
            out.push(flag);
        }
    }
    out
}

/// Maildir info flags for our flags, and the flags Maildir cannot carry
/// (keywords other than `$Forwarded`).
pub fn flags_to_maildir(flags: &[Flag]) -> (maildir::MaildirFlags, Vec<Flag>) {
    let mut f = maildir::MaildirFlags::default();
    let mut lost = Vec::new();
    for flag in flags {
        match flag.as_str() {
            "\\Seen" => f.seen = true,
            "\\Answered" => f.answered = true,
            "\\Flagged" => f.flagged = true,
            "\\Draft" => f.draft = true,
            "\\Deleted" => f.deleted = true,
            FORWARDED => f.forwarded = true,
            _ => lost.push(flag.clone()),
        }
    }
    (f, lost)
}

/// Our special-use role for a folder name (`Sent Items` is `\Sent`, ...).
pub fn special_use_for(name: &str) -> Option<SpecialUse> {
    maildir::special_use_for(name).map(|s| match s {
        maildir::SpecialUse::Sent => SpecialUse::Sent,
        maildir::SpecialUse::Drafts => SpecialUse::Drafts,
        maildir::SpecialUse::Trash => SpecialUse::Trash,
        maildir::SpecialUse::Junk => SpecialUse::Junk,
        maildir::SpecialUse::Archive => SpecialUse::Archive,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_round_trip_through_both_formats() {
        // Every system flag survives mbox and Maildir; keywords survive only
        // as $Forwarded in Maildir and are reported as lost otherwise.
        let mut all = vec![Flag::seen(), Flag::answered(), Flag::flagged(), Flag::draft(), Flag::deleted()];
        all.sort();
        let (m, lost) = flags_to_mbox(&all);
        let mut back = flags_from_mbox(&m);
        back.sort();
        assert_eq!(back, all);
        assert!(lost.is_empty());
        let fwd = Flag::parse(FORWARDED).unwrap();
        let work = Flag::parse("work").unwrap();
        let mut with_kw = all.clone();
        with_kw.push(fwd.clone());
        with_kw.push(work.clone());
        let (d, lost) = flags_to_maildir(&with_kw);
        assert_eq!(lost, vec![work.clone()]);
        let mut back = flags_from_maildir(&d);
        back.sort();
        let mut want = all.clone();
        want.push(fwd.clone());
        want.sort();
        assert_eq!(back, want);
        assert_eq!(flags_to_mbox(std::slice::from_ref(&fwd)).1, vec![fwd]);
    }

    #[test]
    fn special_folders_map_by_name() {
        assert_eq!(special_use_for("Sent Items"), Some(SpecialUse::Sent));
        assert_eq!(special_use_for("INBOX/Spam"), Some(SpecialUse::Junk));
        assert_eq!(special_use_for("Lists"), None);
    }
}
