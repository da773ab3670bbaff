import com.sun.source.util.JavacTask;
import java.io.PrintStream;
import java.lang.ref.Reference;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import javax.tools.DiagnosticCollector;
import javax.tools.JavaCompiler;
import javax.tools.JavaFileObject;
import javax.tools.SimpleJavaFileObject;
import javax.tools.StandardJavaFileManager;
import javax.tools.ToolProvider;

/**
 * A real Java heap at a fixed point: javac parses and attributes a set of generated
 * sources in-process (JavacTask parse + analyze), and keeps its trees, symbols and types
 * reachable. The program then forces full collections (timed by -Xlog:gc), prints
 * "ready" and waits until its standard input closes: meanwhile the caller dumps the
 * live heap and takes the class histogram with jcmd, which run inside the VM and add
 * no Java object, so the dump and the histogram see the same heap.
 *
 * Usage: java JavacHeap CLASSES FULL_GCS
 * Prints "full-gc N" before each forced collection.
 */
public final class JavacHeap {
    /** Everything javac built, kept reachable until the caller is done. */
    static Object keep;

    public static void main(String[] args) throws Exception {
        int classes = Integer.parseInt(args[0]);
        int fullGcs = Integer.parseInt(args[1]);

        JavaCompiler compiler = ToolProvider.getSystemJavaCompiler();
        DiagnosticCollector<JavaFileObject> diagnostics = new DiagnosticCollector<>();
        StandardJavaFileManager files = compiler.getStandardFileManager(diagnostics, null,
                StandardCharsets.UTF_8);
        List<JavaFileObject> units = new ArrayList<>();
        for (int i = 0; i < classes; i++) {
            units.add(new Source(i, classes));
        }
        JavacTask task = (JavacTask) compiler.getTask(null, files, diagnostics,
                List.of("-proc:none", "-Xlint:none"), null, units);
        Object trees = task.parse();
        Object elements = task.analyze();
        if (!diagnostics.getDiagnostics().isEmpty()) {
            throw new IllegalStateException("javac reported: " + diagnostics.getDiagnostics().get(0));
        }
        keep = new Object[] {task, trees, elements, files};

        PrintStream out = System.out;
        for (int i = 0; i < fullGcs; i++) {
            out.println("full-gc " + i);
            out.flush();
            System.gc();
        }
        out.println("ready");
        out.flush();
        while (System.in.read() >= 0) {
            // wait for the caller
        }
        Reference.reachabilityFence(keep);
    }

    /** One generated compilation unit: a class with fields, generics, lambdas and loops. */
    static final class Source extends SimpleJavaFileObject {
        final int index;
        final int classes;

        Source(int index, int classes) {
            super(URI.create("string:///gen/p" + index % 16 + "/C" + index + ".java"), Kind.SOURCE);
            this.index = index;
            this.classes = classes;
        }

        @Override
        public CharSequence getCharContent(boolean ignoreEncodingErrors) {
            int i = index;
            String next = "gen.p" + (i + 1) % classes % 16 + ".C" + (i + 1) % classes;
            StringBuilder s = new StringBuilder();
            s.append("package gen.p").append(i % 16).append(";\n");
            s.append("import java.util.*;\nimport java.util.function.*;\nimport java.util.stream.*;\n");
            s.append("public class C").append(i).append(" implements Comparable<C").append(i)
                    .append("> {\n");
            s.append("  private final int id = ").append(i).append(";\n");
            s.append("  private long total;\n  private String name = \"c").append(i).append("\";\n");
            s.append("  private final List<String> names = new ArrayList<>();\n");
            s.append("  private final Map<String, Integer> counts = new HashMap<>();\n");
            s.append("  private ").append(next).append(" next;\n");
            s.append("  public int compareTo(C").append(i).append(" o) { return Integer.compare(id, o.id); }\n");
            for (int m = 0; m < 6; m++) {
                s.append("  public <T extends Comparable<T>> Optional<T> max").append(m)
                        .append("(List<T> xs, Function<T, Integer> f) {\n")
                        .append("    return xs.stream().filter(x -> f.apply(x) > ").append(m)
                        .append(").max(Comparator.naturalOrder());\n  }\n");
                s.append("  public int sum").append(m).append("(int[] values) {\n")
                        .append("    int acc = ").append(m).append(";\n")
                        .append("    for (int k = 0; k < values.length; k++) {\n")
                        .append("      switch (values[k] % 4) {\n")
                        .append("        case 0: acc += values[k] * ").append(m + 1).append("; break;\n")
                        .append("        case 1: acc -= k; break;\n")
                        .append("        default: acc ^= values[k] << 1;\n      }\n    }\n")
                        .append("    total += acc;\n    return acc;\n  }\n");
                s.append("  public String describe").append(m).append("(Map<String, List<Integer>> m) {\n")
                        .append("    StringBuilder b = new StringBuilder(name);\n")
                        .append("    m.forEach((k, v) -> b.append(k).append('=').append(v.stream()")
                        .append(".mapToInt(Integer::intValue).sum()).append(';'));\n")
                        .append("    counts.merge(b.toString(), ").append(m).append(", Integer::sum);\n")
                        .append("    names.add(\"").append(i).append('-').append(m).append("\" + b);\n")
                        .append("    return next == null ? b.toString() : b + next.toString();\n  }\n");
            }
            s.append("}\n");
            return s;
        }
    }
}
