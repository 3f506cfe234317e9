-- The backups stub goes; see migrations/mysql/0006_drop_backups_stub.sql.
DROP TABLE IF EXISTS backups
