"""ewallet-etl: move an e-wallet's transactions from MySQL/MariaDB into a ClickHouse star schema."""

__version__ = "0.2.0"
