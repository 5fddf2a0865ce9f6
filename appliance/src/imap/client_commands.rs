//! Commands as real clients send them (taken from their protocol logs), each
//! of which must succeed: a parser gap here breaks a client outright.

use crate::imap::testing::Harness;

const MAIL: &str = "Date: Mon, 2 Jan 2023 10:00:00 +0000\r\nFrom: a@example.org\r\nTo: b@example.org\r\n\
Subject: s\r\nMessage-ID: <m@x>\r\nContent-Type: text/plain\r\n\r\nbody\r\n";

fn run(commands: &[&str]) {
    let mut h = Harness::logged_in();
    h.append("INBOX", MAIL);
    for (i, command) in commands.iter().enumerate() {
        h.transact(&format!("c{i} {command}"), "OK");
    }
}

#[test]
fn thunderbird() {
    run(&[
        "ID (\"name\" \"Thunderbird\" \"version\" \"128.0\")",
        "LIST (SUBSCRIBED) \"\" \"*\" RETURN (SPECIAL-USE CHILDREN)",
        "LIST \"\" \"*\" RETURN (SPECIAL-USE)",
        "LSUB \"\" \"*\"",
        "SELECT \"INBOX\" (CONDSTORE)",
        "UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1)",
        "UID FETCH 1 (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (From To Cc Bcc Subject Date Message-ID Priority X-Priority References Newsgroups In-Reply-To Content-Type Reply-To)])",
        "UID FETCH 1 (UID RFC822.SIZE BODY.PEEK[])",
        "UID STORE 1 +FLAGS (\\Seen)",
        "STATUS \"Sent\" (UIDNEXT MESSAGES UNSEEN RECENT HIGHESTMODSEQ)",
        "UID COPY 1 \"Trash\"",
        "UID STORE 1 +FLAGS (\\Deleted)",
        "UID EXPUNGE 1",
    ]);
}

#[test]
fn ios_mail_and_k9() {
    run(&[
        "ID (\"name\" \"iPhone Mail\" \"version\" \"20A362\" \"os\" \"iOS\")",
        "ENABLE QRESYNC",
        "NAMESPACE",
        "LIST \"\" \"\"",
        "LIST \"\" *",
        "SELECT INBOX (QRESYNC (1 1))",
        "UID SEARCH 1:* NOT DELETED",
        "UID FETCH 1:* (UID FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS (DATE FROM SUBJECT)] BODYSTRUCTURE)",
        "UID FETCH 1 (BODY.PEEK[1]<0.2048>)",
        "UID STORE 1 +FLAGS.SILENT (\\Seen)",
        "UID MOVE 1 Archive",
        "UNSELECT",
        "EXAMINE Archive",
        "CLOSE",
    ]);
}

#[test]
fn neomutt_and_mbsync() {
    run(&[
        "CAPABILITY",
        "STATUS \"INBOX\" (MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN)",
        "SELECT \"INBOX\"",
        "FETCH 1:* (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER.FIELDS (DATE FROM SENDER SUBJECT TO CC MESSAGE-ID REFERENCES CONTENT-TYPE CONTENT-DESCRIPTION IN-REPLY-TO REPLY-TO LINES LIST-POST X-LABEL)])",
        "UID FETCH 1:* (UID FLAGS)",
        "UID FETCH 1 (BODY.PEEK[] INTERNALDATE)",
        "APPEND \"Sent\" (\\Seen) \"02-Jan-2023 10:00:00 +0000\" {5+}\r\nhello",
        "SEARCH UNSEEN",
        "CHECK",
        "EXPUNGE",
        "LOGOUT",
    ]);
}
