// Weir against pgjdbc (Debian's libpostgresql-jdbc-java): connect, DatabaseMetaData, a
// PreparedStatement run past prepareThreshold (server-prepared, mixed result formats), and every
// column type. Usage: java -cp /usr/share/java/postgresql.jar Jdbc.java PORT
import java.sql.*;

public class Jdbc {
    static void check(String what, boolean cond, Object detail) {
        if (!cond) {
            System.out.println("FAIL pgjdbc: " + what + " " + detail);
            System.exit(1);
        }
        System.out.println("ok   pgjdbc: " + what);
    }

    public static void main(String[] args) throws Exception {
        String url = "jdbc:postgresql://127.0.0.1:" + args[0] + "/weir?sslmode=disable";
        try (Connection c = DriverManager.getConnection(url, "weir", "")) {
            DatabaseMetaData md = c.getMetaData();
            check("product version", md.getDatabaseProductVersion().startsWith("15"), md.getDatabaseProductVersion());
            try (PreparedStatement ps = c.prepareStatement("SELECT name, rows_in, updating FROM weir_views WHERE rows_in >= ?")) {
                for (int i = 0; i < 7; i++) {
                    ps.setLong(1, 0);
                    try (ResultSet rs = ps.executeQuery()) {
                        check("prepared statement run " + (i + 1), rs.next() && rs.getString(1) != null, null);
                    }
                }
            }
            try (Statement s = c.createStatement();
                 ResultSet rs = s.executeQuery("SELECT CAST(7 AS INT) AS i4, CAST(1.5 AS DOUBLE PRECISION) AS f8, "
                     + "CAST(12.34 AS DECIMAL(10,2)) AS num, 'x' AS txt, true AS flag, "
                     + "CAST('2024-01-02T03:04:05Z' AS TIMESTAMPTZ) AS tstz, CAST('2024-01-02' AS DATE) AS d, "
                     + "make_array(1, 2) AS arr, named_struct('score', 1.5) AS st")) {
                check("row", rs.next(), null);
                check("int4/float8", rs.getInt("i4") == 7 && rs.getDouble("f8") == 1.5, null);
                check("numeric", rs.getBigDecimal("num").toPlainString().equals("12.34"), rs.getBigDecimal("num"));
                check("text/bool", rs.getString("txt").equals("x") && rs.getBoolean("flag"), null);
                check("timestamptz", rs.getTimestamp("tstz").toInstant().toString().equals("2024-01-02T03:04:05Z"), rs.getTimestamp("tstz"));
                check("date", rs.getDate("d").toString().equals("2024-01-02"), rs.getDate("d"));
                Object[] arr = (Object[]) rs.getArray("arr").getArray();
                check("array", arr.length == 2, arr.length);
                check("struct as JSON text", rs.getString("st").contains("\"score\""), rs.getString("st"));
            }
            try (ResultSet rs = md.getTables(null, "public", "%", new String[] {"TABLE", "VIEW", "MATERIALIZED VIEW"})) {
                int n = 0;
                while (rs.next()) n++;
                check("getTables", n >= 1, n);
            }
            try (ResultSet rs = md.getColumns(null, "public", "weir_views", "%")) {
                int n = 0;
                while (rs.next()) n++;
                check("getColumns", n >= 3, n);
            }
        }
        System.out.println("pgjdbc passed");
    }
}
