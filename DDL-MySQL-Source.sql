-- Source (OLTP) schema of the e-wallet, with the seed data of the write-up's expected-result table.
-- Runs unchanged on MySQL 8 and MariaDB 10.11, into the database the client selects:
--   mariadb ewallet_source < DDL-MySQL-Source.sql
-- Change columns (created_at, updated_at) are TIMESTAMP(6): the server stores the instant in UTC
-- whatever the time zone of the server or of the session that writes, so the order of changes
-- and the batch watermark never depend on a writer's `SET time_zone` (a DATETIME stamped by
-- CURRENT_TIMESTAMP holds the writer session's wall clock; the pipeline refuses such a change
-- column, see docs/correctness.md). The pipeline reads them in a UTC session. transaction_time
-- is business data, a DATETIME holding UTC wall-clock time.

CREATE TABLE IF NOT EXISTS users (
    user_id     INT UNSIGNED NOT NULL,
    name        VARCHAR(100) NOT NULL,
    email       VARCHAR(255) NOT NULL,
    city        VARCHAR(100) NOT NULL DEFAULT '',
    created_at  TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    updated_at  TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
    PRIMARY KEY (user_id),
    KEY idx_users_updated_at (updated_at, user_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS merchants (
    merchant_id INT UNSIGNED NOT NULL,
    name        VARCHAR(100) NOT NULL,
    category    VARCHAR(50)  NOT NULL DEFAULT 'Uncategorised',
    city        VARCHAR(100) NOT NULL DEFAULT '',
    created_at  TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    updated_at  TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
    PRIMARY KEY (merchant_id),
    KEY idx_merchants_updated_at (updated_at, merchant_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- transaction_id is a VARCHAR for UUID-style ids; user and merchant are mandatory (NOT NULL FKs).
-- updated_at is the change column the batch extraction follows: the database sets it, with
-- microseconds, on every insert and update.
CREATE TABLE IF NOT EXISTS transactions (
    transaction_id   VARCHAR(64)   NOT NULL,
    user_id          INT UNSIGNED  NOT NULL,
    merchant_id      INT UNSIGNED  NOT NULL,
    amount           DECIMAL(10,2) NOT NULL,
    status           VARCHAR(16)   NOT NULL,
    transaction_time DATETIME      NOT NULL,
    created_at       TIMESTAMP(6)  NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    updated_at       TIMESTAMP(6)  NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
    PRIMARY KEY (transaction_id),
    KEY idx_transactions_updated_at (updated_at, transaction_id),
    KEY idx_transactions_time (transaction_time),
    CONSTRAINT fk_transactions_user FOREIGN KEY (user_id) REFERENCES users (user_id),
    CONSTRAINT fk_transactions_merchant FOREIGN KEY (merchant_id) REFERENCES merchants (merchant_id),
    CONSTRAINT chk_transactions_status CHECK (status IN ('SUCCESS', 'FAILED', 'PENDING', 'REFUNDED'))
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- The batch pipeline's watermark: the upper bound of the last window that landed in ClickHouse.
CREATE TABLE IF NOT EXISTS checkpoint (
    pipeline_name  VARCHAR(100) NOT NULL,
    last_synced_at DATETIME(6)  NOT NULL,
    updated_at     DATETIME(6)  NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
    PRIMARY KEY (pipeline_name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- Seed: the write-up's section 3.3. The initial run loads these 4 transactions; TX1004 is FAILED
-- and is never counted as a sale. INSERT IGNORE keeps the file re-runnable.
INSERT IGNORE INTO users (user_id, name, email, city) VALUES
    (1, 'Andi Pratama',  'andi@example.com', 'Jakarta'),
    (2, 'Budi Santoso',  'budi@example.com', 'Bandung'),
    (3, 'Citra Lestari', 'citra@example.com', 'Surabaya');

INSERT IGNORE INTO merchants (merchant_id, name, category, city) VALUES
    (1, 'Kopi Kenangan',  'Food & Beverage', 'Jakarta'),
    (2, 'Tokopedia',      'E-commerce',      'Jakarta'),
    (3, 'Grab Transport', 'Transport',       'Bandung');

INSERT IGNORE INTO transactions (transaction_id, user_id, merchant_id, amount, status, transaction_time) VALUES
    ('TX1001', 1, 1,  50000.00, 'SUCCESS', '2025-01-10 08:15:00'),
    ('TX1003', 2, 2, 150000.00, 'SUCCESS', '2025-01-10 12:30:00'),
    ('TX1004', 2, 3,  10000.00, 'FAILED',  '2025-01-10 13:05:00'),
    ('TX1008', 2, 1,  65000.00, 'SUCCESS', '2025-01-11 09:45:00');

INSERT IGNORE INTO checkpoint (pipeline_name, last_synced_at) VALUES
    ('transactions_elt', '1970-01-01 00:00:00.000000');
