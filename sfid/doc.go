// Package sfid parses and normalises Salesforce record ids.
//
// A Salesforce id is 15 characters of [A-Za-z0-9], compared case-sensitively, or the same 15
// characters followed by a 3-character checksum suffix that encodes their case, so that the
// 18-character form survives case-insensitive systems. The service keys every record by the
// 18-character form (ID), so a 15- and an 18-character spelling of one record meet in one key.
//
// The suffix is compared case-insensitively, as Salesforce does ("001000000000001aaa" is accepted
// and normalised to "001000000000001AAA"); a suffix that does not match its first 15 characters
// is rejected rather than repaired, because it means the id was damaged.
//
// sfid is a leaf: it imports only the standard library and no backupstore package.
package sfid
