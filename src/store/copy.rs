//! Moving a database: `db copy` (every table of one store into an empty other, in one
//! transaction on the target, verified by row counts and exact sums of the money columns before
//! it commits) and `db backup` (a consistent snapshot of a running SQLite database).
//!
//! It must never write into a target that holds rows (it names the table that does), never
//! commit a copy whose figures differ from the source's, and never overwrite a file.

use std::collections::BTreeMap;
use std::path::Path;

use rust_decimal::Decimal;
use sqlx::{Column, Row, TypeInfo, ValueRef};

use super::db::{self, Arg, DbRow, Pool};
use super::{Backend, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error(
        "the target database is not empty: table {table} holds {rows} row(s); copy into a new, empty database"
    )]
    TargetNotEmpty { table: String, rows: i64 },
    #[error(
        "the target database has no table {table}, which the source has: is it older than this satflow?"
    )]
    MissingTable { table: String },
    #[error(
        "table {table}: {what} is {source_value} in the source but {target_value} in the copy; nothing was committed"
    )]
    Mismatch {
        table: String,
        what: String,
        source_value: String,
        target_value: String,
    },
    #[error(
        "table {table}, column {column}: {value:?} is not an exact amount; nothing was committed"
    )]
    NotAnAmount {
        table: String,
        column: String,
        value: String,
    },
    #[error(
        "table {table}, column {column}: a floating-point value, which satflow never stores; nothing was copied"
    )]
    Float { table: String, column: String },
    #[error("{path} exists already; name a new file (satflow never overwrites a backup)")]
    Exists { path: String },
    #[error(
        "only a SQLite database can be copied from or backed up by satflow (PostgreSQL has pg_dump)"
    )]
    SourceNotSqlite,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for CopyError {
    fn from(err: sqlx::Error) -> CopyError {
        CopyError::Store(err.into())
    }
}

/// What was copied of one table, as verified on both sides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableCopy {
    pub table: String,
    pub rows: i64,
    /// Each money column and its exact sum.
    pub sums: Vec<(String, String)>,
}

/// One stored value, as SQLite holds it.
#[derive(Debug, Clone, PartialEq)]
enum Cell {
    Null,
    Int(i64),
    Text(String),
    Blob(Vec<u8>),
}

/// Whether `column` holds money: an exact decimal as text, or integer sats. By name, so the
/// tables other features add are covered when they follow the naming of the existing ones.
fn is_money(column: &str) -> bool {
    matches!(
        column,
        "cost" | "amount" | "fee" | "rate" | "price" | "fee_rate"
    ) || [
        "_sat", "_sats", "_msat", "_amount", "_cost", "_fee", "_price",
    ]
    .iter()
    .any(|suffix| column.ends_with(suffix))
}

/// The sum of a money column: exact (decimals as `Decimal`, sats as i128).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Sum {
    decimal: Decimal,
    sats: i128,
}

impl Sum {
    fn add(&mut self, cell: &Cell, table: &str, column: &str) -> Result<(), CopyError> {
        let not_an_amount = |value: String| CopyError::NotAnAmount {
            table: table.into(),
            column: column.into(),
            value,
        };
        match cell {
            Cell::Null => {}
            Cell::Int(n) => self.sats += i128::from(*n),
            Cell::Text(t) => {
                let d: Decimal = t.trim().parse().map_err(|_| not_an_amount(t.clone()))?;
                self.decimal = self
                    .decimal
                    .checked_add(d)
                    .ok_or_else(|| not_an_amount(t.clone()))?;
            }
            Cell::Blob(_) => return Err(not_an_amount("(bytes)".into())),
        }
        Ok(())
    }

    fn show(&self) -> String {
        match (self.decimal.is_zero(), self.sats) {
            (false, 0) => self.decimal.normalize().to_string(),
            (true, sats) => sats.to_string(),
            (false, sats) => format!("{} + {sats}", self.decimal.normalize()),
        }
    }
}

/// A table of the source: its columns in order, and the tables it refers to.
struct Table {
    name: String,
    columns: Vec<String>,
    parents: Vec<String>,
}

/// The SQLite pool of `store`, the only kind of source a copy reads.
fn sqlite_pool(store: &Store) -> Result<&sqlx::SqlitePool, CopyError> {
    match store.pool() {
        Pool::Sqlite(pool) => Ok(pool),
        Pool::Pg(_) => Err(CopyError::SourceNotSqlite),
    }
}

/// The tables of a SQLite database, parents before children (foreign keys hold at every insert).
async fn sqlite_tables(pool: &sqlx::SqlitePool) -> Result<Vec<Table>, CopyError> {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table'
           AND name NOT LIKE 'sqlite_%' AND name <> '_sqlx_migrations' ORDER BY name",
    )
    .fetch_all(pool)
    .await?;
    let mut tables = Vec::new();
    for name in names {
        // Table names come from the schema itself, quoted as identifiers.
        let columns: Vec<String> = sqlx::query(&format!("PRAGMA table_info(\"{name}\")"))
            .fetch_all(pool)
            .await?
            .iter()
            .map(|r| r.try_get::<String, _>("name"))
            .collect::<Result<_, _>>()?;
        let parents: Vec<String> = sqlx::query(&format!("PRAGMA foreign_key_list(\"{name}\")"))
            .fetch_all(pool)
            .await?
            .iter()
            .map(|r| r.try_get::<String, _>("table"))
            .collect::<Result<_, _>>()?;
        tables.push(Table {
            name,
            columns,
            parents,
        });
    }
    // Parents first: repeatedly take the tables whose parents are all placed.
    let mut ordered: Vec<Table> = Vec::with_capacity(tables.len());
    while !tables.is_empty() {
        let ready = tables
            .iter()
            .position(|t| {
                t.parents
                    .iter()
                    .all(|p| *p == t.name || ordered.iter().any(|o| o.name == *p))
            })
            // A cycle (none in satflow's schema): take the rest as they come.
            .unwrap_or(0);
        ordered.push(tables.remove(ready));
    }
    Ok(ordered)
}

/// How a target column stores its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Int,
    Text,
    Bytes,
}

/// The columns of every table of the target, with how each stores its values.
async fn target_columns(
    target: &Store,
) -> Result<BTreeMap<String, BTreeMap<String, Kind>>, CopyError> {
    let mut tables: BTreeMap<String, BTreeMap<String, Kind>> = BTreeMap::new();
    match target.pool() {
        Pool::Sqlite(pool) => {
            for table in sqlite_tables(pool).await? {
                let rows = sqlx::query(&format!("PRAGMA table_info(\"{}\")", table.name))
                    .fetch_all(pool)
                    .await?;
                let mut columns = BTreeMap::new();
                for r in &rows {
                    let declared: String = r.try_get("type")?;
                    let kind = match declared.to_ascii_uppercase().as_str() {
                        t if t.contains("INT") => Kind::Int,
                        "BLOB" => Kind::Bytes,
                        _ => Kind::Text,
                    };
                    columns.insert(r.try_get("name")?, kind);
                }
                tables.insert(table.name, columns);
            }
        }
        Pool::Pg(_) => {
            // PostgreSQL's own catalogue: this query is PostgreSQL's alone.
            let rows: Vec<(String, String, String)> = db::query_as(
                "SELECT table_name::TEXT, column_name::TEXT, data_type::TEXT
                 FROM information_schema.columns
                 WHERE table_schema = current_schema() AND table_name <> '_sqlx_migrations'",
            )
            .fetch_all(target.pool())
            .await?;
            for (table, column, data_type) in rows {
                let kind = match data_type.as_str() {
                    "bigint" | "integer" | "smallint" => Kind::Int,
                    "bytea" => Kind::Bytes,
                    _ => Kind::Text,
                };
                tables.entry(table).or_default().insert(column, kind);
            }
        }
    }
    Ok(tables)
}

fn cell(row: &sqlx::sqlite::SqliteRow, i: usize, table: &str) -> Result<Cell, CopyError> {
    let raw = row.try_get_raw(i)?;
    if raw.is_null() {
        return Ok(Cell::Null);
    }
    let kind = raw.type_info().name().to_string();
    Ok(match kind.as_str() {
        "INTEGER" => Cell::Int(row.try_get(i)?),
        "TEXT" => Cell::Text(row.try_get(i)?),
        "BLOB" => Cell::Blob(row.try_get(i)?),
        _ => {
            return Err(CopyError::Float {
                table: table.into(),
                column: row.columns()[i].name().into(),
            });
        }
    })
}

/// A value read back from the target: SQLite says what it holds, PostgreSQL's column does.
fn target_cell(row: &DbRow, i: usize, kind: Kind, table: &str) -> Result<Cell, CopyError> {
    Ok(match row {
        DbRow::Sqlite(r) => cell(r, i, table)?,
        DbRow::Pg(_) => match kind {
            Kind::Int => row
                .try_get::<Option<i64>, _>(i)?
                .map_or(Cell::Null, Cell::Int),
            Kind::Text => row
                .try_get::<Option<String>, _>(i)?
                .map_or(Cell::Null, Cell::Text),
            Kind::Bytes => row
                .try_get::<Option<Vec<u8>>, _>(i)?
                .map_or(Cell::Null, Cell::Blob),
        },
    })
}

/// `cell` as the target column `kind` takes it. SQLite keeps what it was given whatever the
/// column says; PostgreSQL's column decides, so an integer in a text column becomes its text.
fn arg(cell: &Cell, kind: Kind, table: &str, column: &str) -> Result<Arg, CopyError> {
    let mismatch = || CopyError::NotAnAmount {
        table: table.into(),
        column: column.into(),
        value: format!("{cell:?} in a {kind:?} column"),
    };
    Ok(match (cell, kind) {
        (Cell::Null, Kind::Int) => Arg::Int(None),
        (Cell::Null, Kind::Text) => Arg::Text(None),
        (Cell::Null, Kind::Bytes) => Arg::Bytes(None),
        (Cell::Int(n), Kind::Int) => Arg::Int(Some(*n)),
        (Cell::Int(n), Kind::Text) => Arg::Text(Some(n.to_string())),
        (Cell::Text(t), Kind::Text) => Arg::Text(Some(t.clone())),
        (Cell::Text(t), Kind::Int) => Arg::Int(Some(t.trim().parse().map_err(|_| mismatch())?)),
        (Cell::Text(t), Kind::Bytes) => Arg::Bytes(Some(t.as_bytes().to_vec())),
        (Cell::Blob(b), Kind::Bytes) => Arg::Bytes(Some(b.clone())),
        (Cell::Blob(b), Kind::Text) => {
            Arg::Text(Some(String::from_utf8(b.clone()).map_err(|_| mismatch())?))
        }
        (Cell::Blob(_) | Cell::Int(_), _) => return Err(mismatch()),
    })
}

/// A value already decided on is bound as it is.
impl db::IntoArg for Arg {
    fn into_arg(self) -> Arg {
        self
    }
}

/// Row count and money sums of `rows`.
fn figures(table: &Table, rows: &[Vec<Cell>]) -> Result<(i64, BTreeMap<String, Sum>), CopyError> {
    let mut sums = BTreeMap::new();
    for (i, column) in table.columns.iter().enumerate() {
        if !is_money(column) {
            continue;
        }
        let mut sum = Sum::default();
        for row in rows {
            sum.add(&row[i], &table.name, column)?;
        }
        sums.insert(column.clone(), sum);
    }
    Ok((rows.len() as i64, sums))
}

fn select_all(table: &Table) -> String {
    let columns = table
        .columns
        .iter()
        .map(|c| format!("\"{c}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!("SELECT {columns} FROM \"{}\"", table.name)
}

impl Store {
    /// Copies every table of this (SQLite) store into `target` (SQLite or PostgreSQL), which
    /// must be empty, in one transaction on the target; commits only when the copy's row counts
    /// and money sums equal the source's. Returns the verified figures of each table.
    pub async fn copy_into(&self, target: &Store) -> Result<Vec<TableCopy>, CopyError> {
        let pool = sqlite_pool(self)?;
        let tables = sqlite_tables(pool).await?;
        let target_tables = target_columns(target).await?;
        let mut kinds = BTreeMap::new();
        for table in &tables {
            let Some(columns) = target_tables.get(&table.name) else {
                return Err(CopyError::MissingTable {
                    table: table.name.clone(),
                });
            };
            let mut table_kinds = Vec::new();
            for column in &table.columns {
                table_kinds.push(*columns.get(column).ok_or_else(|| CopyError::MissingTable {
                    table: format!("{}.{column}", table.name),
                })?);
            }
            kinds.insert(table.name.clone(), table_kinds);
            let rows: i64 = db::query_scalar(&format!("SELECT COUNT(*) FROM \"{}\"", table.name))
                .fetch_one(target.pool())
                .await?;
            if rows > 0 {
                return Err(CopyError::TargetNotEmpty {
                    table: table.name.clone(),
                    rows,
                });
            }
        }
        // One read transaction on the source: the copy is of one moment, even while a daemon
        // writes (WAL readers see a snapshot).
        let mut source = pool.begin().await?;
        let mut tx = target.begin_write().await?;
        let mut copied = Vec::with_capacity(tables.len());
        for table in &tables {
            let table_kinds = &kinds[&table.name];
            let rows: Vec<Vec<Cell>> = sqlx::query(&select_all(table))
                .fetch_all(&mut *source)
                .await?
                .iter()
                .map(|row| {
                    (0..table.columns.len())
                        .map(|i| cell(row, i, &table.name))
                        .collect()
                })
                .collect::<Result<_, CopyError>>()?;
            let (count, sums) = figures(table, &rows)?;
            let columns = table
                .columns
                .iter()
                .map(|c| format!("\"{c}\""))
                .collect::<Vec<_>>()
                .join(", ");
            let params = (1..=table.columns.len())
                .map(|i| format!("${i}"))
                .collect::<Vec<_>>()
                .join(", ");
            let insert = format!(
                "INSERT INTO \"{}\" ({columns}) VALUES ({params})",
                table.name
            );
            for row in &rows {
                let mut q = db::query(&insert);
                for ((cell, kind), column) in row.iter().zip(table_kinds).zip(&table.columns) {
                    q = q.bind(arg(cell, *kind, &table.name, column)?);
                }
                q.execute(&mut tx).await?;
            }
            // Read back what the target now holds, inside the transaction, and compare.
            let written: Vec<Vec<Cell>> = db::query(&select_all(table))
                .fetch_all(&mut tx)
                .await?
                .iter()
                .map(|row| {
                    table_kinds
                        .iter()
                        .enumerate()
                        .map(|(i, kind)| target_cell(row, i, *kind, &table.name))
                        .collect()
                })
                .collect::<Result<_, CopyError>>()?;
            let (written_count, written_sums) = figures(table, &written)?;
            let mismatch =
                |what: String, source_value: String, target_value: String| CopyError::Mismatch {
                    table: table.name.clone(),
                    what,
                    source_value,
                    target_value,
                };
            if written_count != count {
                return Err(mismatch(
                    "the row count".into(),
                    count.to_string(),
                    written_count.to_string(),
                ));
            }
            for (column, sum) in &sums {
                let other = written_sums.get(column).copied().unwrap_or_default();
                if other != *sum {
                    return Err(mismatch(
                        format!("the sum of {column}"),
                        sum.show(),
                        other.show(),
                    ));
                }
            }
            copied.push(TableCopy {
                table: table.name.clone(),
                rows: count,
                sums: sums.iter().map(|(c, s)| (c.clone(), s.show())).collect(),
            });
        }
        if target.backend() == Backend::Postgres {
            // Ids were copied as they were: each identity column's sequence moves past the
            // largest, or the next row inserted there would collide. PostgreSQL's alone.
            let identities: Vec<(String, String)> = db::query_as(
                "SELECT table_name::TEXT, column_name::TEXT FROM information_schema.columns
                 WHERE table_schema = current_schema() AND is_identity = 'YES'",
            )
            .fetch_all(&mut tx)
            .await?;
            for (table, column) in identities {
                db::query(&format!(
                    "SELECT setval(pg_get_serial_sequence('\"{table}\"', '{column}'),
                                   COALESCE((SELECT MAX(\"{column}\") FROM \"{table}\"), 0) + 1, false)"
                ))
                .execute(&mut tx)
                .await?;
            }
        }
        tx.commit().await?;
        source.commit().await?;
        Ok(copied)
    }

    /// Writes a consistent snapshot of this (SQLite) database to `path` (`VACUUM INTO`: one
    /// read transaction, so a daemon may keep writing). Refuses a `path` that exists.
    pub async fn backup_to(&self, path: &Path) -> Result<(), CopyError> {
        let pool = sqlite_pool(self)?;
        if path.exists() {
            return Err(CopyError::Exists {
                path: path.display().to_string(),
            });
        }
        sqlx::query("VACUUM INTO $1")
            .bind(path.to_string_lossy().into_owned())
            .execute(pool)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_columns_are_known_by_name() {
        for c in [
            "cost",
            "amount",
            "fee",
            "amount_sat",
            "fee_sat",
            "price",
            "limit_amount",
        ] {
            assert!(is_money(c), "{c}");
        }
        for c in ["id", "address", "state", "feed", "attempts", "created_at"] {
            assert!(!is_money(c), "{c}");
        }
    }

    #[test]
    fn sums_are_exact() {
        let mut sum = Sum::default();
        for v in ["0.1", "0.2", "100.00"] {
            sum.add(&Cell::Text(v.into()), "t", "cost").unwrap();
        }
        assert_eq!(sum.show(), "100.3");
        let mut sats = Sum::default();
        sats.add(&Cell::Int(i64::MAX), "t", "amount_sat").unwrap();
        sats.add(&Cell::Int(i64::MAX), "t", "amount_sat").unwrap();
        assert_eq!(sats.show(), (2 * i128::from(i64::MAX)).to_string());
        assert!(matches!(
            sum.add(&Cell::Text("1e3 EUR".into()), "t", "cost"),
            Err(CopyError::NotAnAmount { .. })
        ));
    }
}
