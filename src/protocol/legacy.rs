//! DSF v1 integer type codes (PROTOCOL §4), accepted as aliases of operation names.

/// What a legacy integer `type` stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Legacy {
    /// An alias of the named operation.
    Op(&'static str),
    /// Code 3: the client asks the server to close the connection cleanly.
    Exit,
}

/// Maps a v1 code to its meaning; `None` for codes v1 never had (`unknown_type`).
pub fn lookup(code: i64) -> Option<Legacy> {
    Some(match code {
        1 => Legacy::Op("user.login"),
        2 => Legacy::Op("user.register"),
        3 => Legacy::Exit,
        4 => Legacy::Op("blacklist.insert"),
        5 => Legacy::Op("blacklist.delete"),
        6 => Legacy::Op("blacklist.update"),
        7 => Legacy::Op("blacklist.search"),
        8 => Legacy::Op("collector.report"),
        9 => Legacy::Op("blacklist.query"),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_v1_code_maps() {
        assert_eq!(lookup(1), Some(Legacy::Op("user.login")));
        assert_eq!(lookup(3), Some(Legacy::Exit));
        assert_eq!(lookup(9), Some(Legacy::Op("blacklist.query")));
        assert_eq!(lookup(0), None);
        assert_eq!(lookup(10), None);
        assert_eq!(lookup(-1), None);
    }
}
