//! Rows in `COPY ... FROM STDIN`'s text format (tab-separated, `\N` for NULL, backslash escapes),
//! built in a buffer and handed on in chunks of about a megabyte while the generator goes on.

use std::io::Write;

use uuid::Uuid;

use crate::time::Time;

/// A table the seed writes and the columns it writes, in `COPY`'s order.
#[derive(Debug)]
pub struct Table {
    pub name: &'static str,
    /// The file that generates the table's rows (`file!()`), named by tests that find a column
    /// the seed does not fill as it should.
    pub source: &'static str,
    pub columns: &'static [&'static str],
}

impl Table {
    /// `FREEZE`: the table was emptied in the same transaction, so its rows can be written
    /// already frozen and visible, sparing the first reads and vacuum a rewrite of every page.
    pub fn copy_statement(&self) -> String {
        format!(
            "COPY {} ({}) FROM STDIN WITH (FREEZE)",
            self.name,
            self.columns.join(", ")
        )
    }
}

/// What the generator sends to the loader.
pub enum Chunk {
    /// The rows that follow, until [`Chunk::End`], belong to this table.
    Start {
        table: &'static Table,
        expected: u64,
    },
    Rows {
        data: Vec<u8>,
        rows: u64,
    },
    End,
}

/// Where chunks go; `false` once the loader stopped listening (it failed), after which the
/// generator keeps its rows to itself.
pub trait Sink {
    fn send(&mut self, chunk: Chunk) -> bool;
}

const CHUNK_BYTES: usize = 1 << 20;

/// The rows of one table being written.
pub struct Rows<'s> {
    table: &'static Table,
    sink: &'s mut dyn Sink,
    buf: Vec<u8>,
    rows: u64,
    buffered: u64,
    open: bool,
    scratch: Vec<u8>,
}

impl<'s> Rows<'s> {
    pub fn start(sink: &'s mut dyn Sink, table: &'static Table, expected: u64) -> Self {
        let open = sink.send(Chunk::Start { table, expected });
        Self {
            table,
            sink,
            buf: Vec::with_capacity(CHUNK_BYTES + 64 * 1024),
            rows: 0,
            buffered: 0,
            open,
            scratch: Vec::new(),
        }
    }

    /// Adds one row: `fill` writes its fields, in the table's column order.
    pub fn row(&mut self, fill: impl FnOnce(&mut Row<'_>)) {
        self.rows += 1;
        if !self.open {
            return;
        }
        let mut row = Row {
            buf: &mut self.buf,
            scratch: &mut self.scratch,
            fields: 0,
        };
        fill(&mut row);
        let fields = row.fields;
        debug_assert_eq!(
            fields,
            self.table.columns.len(),
            "a row of {} has {fields} fields for columns {:?}",
            self.table.name,
            self.table.columns
        );
        self.buf.push(b'\n');
        self.buffered += 1;
        if self.buf.len() >= CHUNK_BYTES {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if self.buffered == 0 || !self.open {
            return;
        }
        let data = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK_BYTES + 64 * 1024));
        self.open = self.sink.send(Chunk::Rows {
            data,
            rows: self.buffered,
        });
        self.buffered = 0;
    }

    /// Sends what is left and closes the table; returns how many rows it has.
    pub fn finish(mut self) -> u64 {
        self.flush();
        if self.open {
            self.sink.send(Chunk::End);
        }
        self.rows
    }
}

/// The fields of one row.
pub struct Row<'b> {
    buf: &'b mut Vec<u8>,
    scratch: &'b mut Vec<u8>,
    fields: usize,
}

impl Row<'_> {
    fn field(&mut self) -> &mut Vec<u8> {
        if self.fields > 0 {
            self.buf.push(b'\t');
        }
        self.fields += 1;
        self.buf
    }

    pub fn null(&mut self) -> &mut Self {
        self.field().extend_from_slice(b"\\N");
        self
    }

    pub fn text(&mut self, value: &str) -> &mut Self {
        let buf = self.field();
        escape_into(buf, value.as_bytes());
        self
    }

    pub fn opt_text(&mut self, value: Option<&str>) -> &mut Self {
        match value {
            Some(value) => self.text(value),
            None => self.null(),
        }
    }

    pub fn int(&mut self, value: i64) -> &mut Self {
        let _ = write!(self.field(), "{value}");
        self
    }

    pub fn opt_int(&mut self, value: Option<i64>) -> &mut Self {
        match value {
            Some(value) => self.int(value),
            None => self.null(),
        }
    }

    pub fn bool(&mut self, value: bool) -> &mut Self {
        self.field().push(if value { b't' } else { b'f' });
        self
    }

    pub fn uuid(&mut self, value: Uuid) -> &mut Self {
        let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
        let text = value.hyphenated().encode_lower(&mut text);
        self.field().extend_from_slice(text.as_bytes());
        self
    }

    pub fn opt_uuid(&mut self, value: Option<Uuid>) -> &mut Self {
        match value {
            Some(value) => self.uuid(value),
            None => self.null(),
        }
    }

    pub fn time(&mut self, value: Time) -> &mut Self {
        value.write_sql(self.field());
        self
    }

    pub fn opt_time(&mut self, value: Option<Time>) -> &mut Self {
        match value {
            Some(value) => self.time(value),
            None => self.null(),
        }
    }

    pub fn json(&mut self, value: &serde_json::Value) -> &mut Self {
        self.scratch.clear();
        serde_json::to_writer(&mut *self.scratch, value).expect("a Value always serialises");
        let json = std::mem::take(self.scratch);
        escape_into(self.field(), &json);
        *self.scratch = json;
        self
    }

    pub fn opt_json(&mut self, value: Option<&serde_json::Value>) -> &mut Self {
        match value {
            Some(value) => self.json(value),
            None => self.null(),
        }
    }

    /// A `text[]` literal with every element quoted: `{"a","b c"}`.
    pub fn text_array(&mut self, values: &[&str]) -> &mut Self {
        self.scratch.clear();
        self.scratch.push(b'{');
        for (i, value) in values.iter().enumerate() {
            if i > 0 {
                self.scratch.push(b',');
            }
            self.scratch.push(b'"');
            for &byte in value.as_bytes() {
                if byte == b'"' || byte == b'\\' {
                    self.scratch.push(b'\\');
                }
                self.scratch.push(byte);
            }
            self.scratch.push(b'"');
        }
        self.scratch.push(b'}');
        let literal = std::mem::take(self.scratch);
        escape_into(self.field(), &literal);
        *self.scratch = literal;
        self
    }
}

/// Appends `value` with the backslash escapes of `COPY`'s text format.
fn escape_into(buf: &mut Vec<u8>, value: &[u8]) {
    if !value
        .iter()
        .any(|b| matches!(b, b'\\' | b'\t' | b'\n' | b'\r'))
    {
        buf.extend_from_slice(value);
        return;
    }
    for &byte in value {
        match byte {
            b'\\' => buf.extend_from_slice(b"\\\\"),
            b'\t' => buf.extend_from_slice(b"\\t"),
            b'\n' => buf.extend_from_slice(b"\\n"),
            b'\r' => buf.extend_from_slice(b"\\r"),
            _ => buf.push(byte),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Collect(Vec<u8>);

    impl Sink for Collect {
        fn send(&mut self, chunk: Chunk) -> bool {
            if let Chunk::Rows { data, .. } = chunk {
                self.0.extend(data);
            }
            true
        }
    }

    static T: Table = Table {
        name: "t",
        source: file!(),
        columns: &["a", "b", "c", "d", "e"],
    };

    #[test]
    fn escapes_what_copy_text_format_reads_specially() {
        let mut sink = Collect(Vec::new());
        let mut rows = Rows::start(&mut sink, &T, 1);
        rows.row(|r| {
            r.text("tab\there\nline \\ back")
                .null()
                .json(&serde_json::json!({ "text": "say \"hi\"\n" }))
                .text_array(&["chat:write", "a \"q\""])
                .bool(true);
        });
        assert_eq!(rows.finish(), 1);
        assert_eq!(
            String::from_utf8(sink.0).unwrap(),
            "tab\\there\\nline \\\\ back\t\\N\t{\"text\":\"say \\\\\"hi\\\\\"\\\\n\"}\t\
             {\"chat:write\",\"a \\\\\"q\\\\\"\"}\tt\n"
        );
    }
}
