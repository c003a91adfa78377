//! Reading the input: the CSV reader, header resolution, Chat's field rules, one record → one
//! portrait_set body, and duplicate UserIDs in constant memory.

pub mod dupes;
pub mod header;
pub mod merge;
pub mod parts;
pub mod profile;
pub mod reader;
pub mod row;
pub mod rows;
pub mod source;
pub mod stdin;
pub mod survey;
