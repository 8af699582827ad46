//! PostgreSQL's built-in types as clients see them: the rows of `pg_type`, and the type each
//! Arrow column is announced as on the wire.
//!
//! The mapping mirrors the wire encoder's (arrow-pg's `into_pg_type`, after the wire layer has
//! turned nested values into JSON text), so `pg_attribute`, `information_schema.columns` and a
//! query's RowDescription always agree. Only built-in OIDs appear: any other OID sends asyncpg,
//! pgjdbc and tokio-postgres into type-introspection queries.

use datafusion::arrow::datatypes::DataType;

/// One built-in type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PgType {
    /// Its OID (fixed by PostgreSQL).
    pub oid: i32,
    /// `pg_type.typname`.
    pub name: &'static str,
    /// `format_type` output (`double precision`, `timestamp with time zone`, `integer[]`).
    pub sql_name: &'static str,
    /// `pg_type.typlen` (-1: variable length).
    pub len: i16,
    /// `pg_type.typcategory`.
    pub category: char,
    /// Element type of an array type (0 otherwise).
    pub elem: i32,
    /// The array type whose elements are this type (0 if none).
    pub array: i32,
}

const fn t(
    oid: i32,
    name: &'static str,
    sql_name: &'static str,
    len: i16,
    category: char,
    array: i32,
) -> PgType {
    PgType {
        oid,
        name,
        sql_name,
        len,
        category,
        elem: 0,
        array,
    }
}

const fn arr(oid: i32, name: &'static str, sql_name: &'static str, elem: i32) -> PgType {
    PgType {
        oid,
        name,
        sql_name,
        len: -1,
        category: 'A',
        elem,
        array: 0,
    }
}

/// The built-in types Weir knows, with PostgreSQL's OIDs.
pub const BUILTIN_TYPES: &[PgType] = &[
    t(16, "bool", "boolean", 1, 'B', 1000),
    t(17, "bytea", "bytea", -1, 'U', 1001),
    t(18, "char", "\"char\"", 1, 'Z', 1002),
    t(19, "name", "name", 64, 'S', 1003),
    t(20, "int8", "bigint", 8, 'N', 1016),
    t(21, "int2", "smallint", 2, 'N', 1005),
    t(22, "int2vector", "int2vector", -1, 'A', 1006),
    t(23, "int4", "integer", 4, 'N', 1007),
    t(24, "regproc", "regproc", 4, 'N', 1008),
    t(25, "text", "text", -1, 'S', 1009),
    t(26, "oid", "oid", 4, 'N', 1028),
    t(30, "oidvector", "oidvector", -1, 'A', 1013),
    t(114, "json", "json", -1, 'U', 199),
    t(700, "float4", "real", 4, 'N', 1021),
    t(701, "float8", "double precision", 8, 'N', 1022),
    t(705, "unknown", "unknown", -2, 'X', 0),
    t(1042, "bpchar", "character", -1, 'S', 1014),
    t(1043, "varchar", "character varying", -1, 'S', 1015),
    t(1082, "date", "date", 4, 'D', 1182),
    t(1083, "time", "time without time zone", 8, 'D', 1183),
    t(
        1114,
        "timestamp",
        "timestamp without time zone",
        8,
        'D',
        1115,
    ),
    t(
        1184,
        "timestamptz",
        "timestamp with time zone",
        8,
        'D',
        1185,
    ),
    t(1186, "interval", "interval", 16, 'T', 1187),
    t(1700, "numeric", "numeric", -1, 'N', 1231),
    t(2205, "regclass", "regclass", 4, 'N', 2210),
    t(2206, "regtype", "regtype", 4, 'N', 2211),
    t(2249, "record", "record", -1, 'P', 2287),
    t(2278, "void", "void", 4, 'P', 0),
    t(2950, "uuid", "uuid", 16, 'U', 2951),
    t(3802, "jsonb", "jsonb", -1, 'U', 3807),
    t(4089, "regnamespace", "regnamespace", 4, 'N', 4090),
    arr(1000, "_bool", "boolean[]", 16),
    arr(1001, "_bytea", "bytea[]", 17),
    arr(1002, "_char", "\"char\"[]", 18),
    arr(1003, "_name", "name[]", 19),
    arr(1005, "_int2", "smallint[]", 21),
    arr(1007, "_int4", "integer[]", 23),
    arr(1009, "_text", "text[]", 25),
    arr(1014, "_bpchar", "character[]", 1042),
    arr(1015, "_varchar", "character varying[]", 1043),
    arr(1016, "_int8", "bigint[]", 20),
    arr(1021, "_float4", "real[]", 700),
    arr(1022, "_float8", "double precision[]", 701),
    arr(1028, "_oid", "oid[]", 26),
    arr(1115, "_timestamp", "timestamp without time zone[]", 1114),
    arr(1182, "_date", "date[]", 1082),
    arr(1183, "_time", "time without time zone[]", 1083),
    arr(1185, "_timestamptz", "timestamp with time zone[]", 1184),
    arr(1187, "_interval", "interval[]", 1186),
    arr(1231, "_numeric", "numeric[]", 1700),
    arr(199, "_json", "json[]", 114),
    arr(2951, "_uuid", "uuid[]", 2950),
    arr(3807, "_jsonb", "jsonb[]", 3802),
];

/// A built-in type by OID.
pub fn by_oid(oid: i32) -> Option<&'static PgType> {
    BUILTIN_TYPES.iter().find(|t| t.oid == oid)
}

/// A built-in type by `typname` or SQL spelling (`int4`, `integer`, `double precision`).
pub fn by_name(name: &str) -> Option<&'static PgType> {
    let name = name
        .trim()
        .trim_start_matches("pg_catalog.")
        .to_ascii_lowercase();
    let alias = match name.as_str() {
        "int" | "integer" => "int4",
        "smallint" => "int2",
        "bigint" => "int8",
        "real" => "float4",
        "double precision" | "float" => "float8",
        "boolean" => "bool",
        "character varying" => "varchar",
        "character" | "char(1)" => "bpchar",
        "timestamp without time zone" => "timestamp",
        "timestamp with time zone" => "timestamptz",
        "time without time zone" => "time",
        "decimal" => "numeric",
        other => other,
    };
    BUILTIN_TYPES
        .iter()
        .find(|t| t.name == alias || t.sql_name == name)
}

fn builtin(oid: i32) -> &'static PgType {
    // Every OID passed here is in BUILTIN_TYPES; text is a safe answer if one ever is not.
    by_oid(oid).unwrap_or(&BUILTIN_TYPES[9])
}

/// The type a column of `data_type` is announced as on the wire.
pub fn of_arrow(data_type: &DataType) -> &'static PgType {
    builtin(scalar_oid(data_type).unwrap_or(25))
}

fn scalar_oid(data_type: &DataType) -> Option<i32> {
    Some(match data_type {
        DataType::Boolean => 16,
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => 21,
        DataType::Int32 | DataType::UInt16 => 23,
        DataType::Int64 | DataType::UInt32 => 20,
        DataType::UInt64 | DataType::Decimal128(..) | DataType::Decimal256(..) => 1700,
        DataType::Float16 | DataType::Float32 => 700,
        DataType::Float64 => 701,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => 25,
        DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_) => 17,
        DataType::Date32 | DataType::Date64 => 1082,
        DataType::Time32(_) | DataType::Time64(_) => 1083,
        DataType::Timestamp(_, Some(_)) => 1184,
        DataType::Timestamp(_, None) => 1114,
        DataType::Interval(_) | DataType::Duration(_) => 1186,
        DataType::Dictionary(_, value) => return scalar_oid(value),
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => {
            let elem = scalar_oid(f.data_type())?;
            let array = builtin(elem).array;
            if array == 0 || matches!(f.data_type(), DataType::List(_) | DataType::LargeList(_)) {
                return None;
            }
            array
        }
        // Structs, maps, unions and NULL-typed columns travel as text (JSON for nested values).
        _ => return None,
    })
}

/// True when the wire layer sends `data_type` as JSON text rather than natively.
pub fn sent_as_json(data_type: &DataType) -> bool {
    !matches!(data_type, DataType::Null) && scalar_oid(data_type).is_none()
}

/// `information_schema.columns.data_type`: PostgreSQL's spelling, with arrays as `ARRAY`.
pub fn information_schema_name(t: &PgType) -> &'static str {
    if t.elem != 0 { "ARRAY" } else { t.sql_name }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::datatypes::{Field, TimeUnit};

    use super::*;

    #[test]
    fn arrow_types_map_to_builtin_oids() {
        assert_eq!(of_arrow(&DataType::Float64).oid, 701);
        assert_eq!(
            of_arrow(&DataType::Timestamp(
                TimeUnit::Microsecond,
                Some("+00:00".into())
            ))
            .oid,
            1184
        );
        assert_eq!(of_arrow(&DataType::UInt64).sql_name, "numeric");
        let list = DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)));
        assert_eq!(of_arrow(&list).oid, 1009);
        let nested = DataType::Struct(vec![Field::new("x", DataType::Int64, true)].into());
        assert_eq!(of_arrow(&nested).oid, 25);
        assert!(sent_as_json(&nested));
        assert!(!sent_as_json(&DataType::Int64));
    }

    #[test]
    fn names_resolve_both_spellings() {
        assert_eq!(by_name("double precision").map(|t| t.oid), Some(701));
        assert_eq!(by_name("pg_catalog.int4").map(|t| t.oid), Some(23));
        assert_eq!(by_name("hstore"), None);
        assert_eq!(information_schema_name(builtin(1007)), "ARRAY");
        // Every array type points at an element type that exists, and back.
        for t in BUILTIN_TYPES.iter().filter(|t| t.elem != 0) {
            assert_eq!(by_oid(t.elem).map(|e| e.array), Some(t.oid), "{}", t.name);
        }
    }
}
