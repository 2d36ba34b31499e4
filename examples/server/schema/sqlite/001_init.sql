-- Users, accounts, transfers with their ledger, and idempotency keys.
-- Ids are never reused (AUTOINCREMENT), so a cached or bookmarked id never
-- names a different row later.

CREATE TABLE IF NOT EXISTS users (
	id         INTEGER PRIMARY KEY AUTOINCREMENT,
	username   TEXT    NOT NULL,
	email      TEXT    NOT NULL,
	full_name  TEXT    NOT NULL,
	name_key   TEXT    NOT NULL, -- lower-cased full_name, for prefix search
	version    INTEGER NOT NULL DEFAULT 1,
	created_at TIMESTAMP NOT NULL,
	updated_at TIMESTAMP NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS users_username ON users (username);
CREATE UNIQUE INDEX IF NOT EXISTS users_email ON users (email);
CREATE INDEX IF NOT EXISTS users_name_key ON users (name_key);

CREATE TABLE IF NOT EXISTS accounts (
	id         INTEGER PRIMARY KEY AUTOINCREMENT,
	user_id    INTEGER REFERENCES users (id),
	balance    INTEGER NOT NULL CHECK (balance BETWEEN 0 AND 1000000000000000),
	created_at TIMESTAMP NOT NULL
);
CREATE INDEX IF NOT EXISTS accounts_user ON accounts (user_id);

CREATE TABLE IF NOT EXISTS transfers (
	id           INTEGER PRIMARY KEY AUTOINCREMENT,
	from_account INTEGER NOT NULL REFERENCES accounts (id),
	to_account   INTEGER NOT NULL REFERENCES accounts (id),
	amount       INTEGER NOT NULL CHECK (amount > 0),
	created_at   TIMESTAMP NOT NULL,
	CHECK (from_account <> to_account)
);

-- Every change of a balance, signed: an account's opening balance, and a
-- debit and a credit per transfer. The sum of an account's rows is its
-- balance.
CREATE TABLE IF NOT EXISTS ledger (
	id          INTEGER PRIMARY KEY AUTOINCREMENT,
	account_id  INTEGER NOT NULL REFERENCES accounts (id),
	transfer_id INTEGER REFERENCES transfers (id),
	amount      INTEGER NOT NULL,
	created_at  TIMESTAMP NOT NULL
);
CREATE INDEX IF NOT EXISTS ledger_account ON ledger (account_id);
CREATE INDEX IF NOT EXISTS ledger_transfer ON ledger (transfer_id);

-- The answers to requests that carried an Idempotency-Key, per client, for
-- 24 hours.
CREATE TABLE IF NOT EXISTS idempotency_keys (
	client_id   TEXT    NOT NULL,
	idem_key    TEXT    NOT NULL,
	method      TEXT    NOT NULL,
	route       TEXT    NOT NULL,
	fingerprint TEXT    NOT NULL,
	status      INTEGER NOT NULL,
	body        BLOB    NOT NULL,
	created_at  TIMESTAMP NOT NULL,
	PRIMARY KEY (client_id, idem_key)
);
CREATE INDEX IF NOT EXISTS idempotency_keys_created ON idempotency_keys (created_at);
