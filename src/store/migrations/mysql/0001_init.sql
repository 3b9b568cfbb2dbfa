-- Users, sessions, the blacklist and collector reports.
-- Text columns are VARBINARY: comparisons are byte-exact (no collation folding of
-- case or trailing spaces), so what a client stores is exactly what it finds.
CREATE TABLE IF NOT EXISTS users (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    name VARBINARY(128) NOT NULL,
    password_hash VARBINARY(255) NOT NULL,
    created BIGINT UNSIGNED NOT NULL,
    UNIQUE KEY users_name (name)
) ENGINE=InnoDB;

CREATE TABLE IF NOT EXISTS sessions (
    token_hash BINARY(64) NOT NULL PRIMARY KEY,
    user_id BIGINT UNSIGNED NOT NULL,
    created BIGINT UNSIGNED NOT NULL,
    expires_at BIGINT UNSIGNED NOT NULL,
    KEY sessions_expires (expires_at)
) ENGINE=InnoDB;

CREATE TABLE IF NOT EXISTS blacklist (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    id_card VARBINARY(256) NOT NULL,
    name VARBINARY(256) NOT NULL,
    created BIGINT UNSIGNED NOT NULL,
    updated BIGINT UNSIGNED NOT NULL,
    UNIQUE KEY blacklist_id_card (id_card),
    KEY blacklist_name (name)
) ENGINE=InnoDB;

CREATE TABLE IF NOT EXISTS reports (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    reporter BIGINT UNSIGNED NOT NULL,
    id_card VARBINARY(256) NOT NULL,
    name VARBINARY(256) NOT NULL,
    source VARBINARY(512) NULL,
    created BIGINT UNSIGNED NOT NULL,
    listed BOOLEAN NOT NULL,
    KEY reports_id_card (id_card)
) ENGINE=InnoDB;

CREATE TABLE IF NOT EXISTS login_failures (
    name VARBINARY(128) NOT NULL PRIMARY KEY,
    failures INT UNSIGNED NOT NULL,
    window_start BIGINT UNSIGNED NOT NULL
) ENGINE=InnoDB;
