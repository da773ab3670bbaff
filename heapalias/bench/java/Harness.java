// Runs one program (GCBench or BinaryTrees) a round at a time, when asked: each line read
// from stdin runs one round, and its result goes to stdout between two markers, so that
// the GC log (-Xlog:gc:stdout) lines of the round fall between them:
//   begin
//   ...GC(7) Pause Young (Allocation Failure) 17M->1M(61M) 0.955ms...
//   end total_ns=<in-program time> checks=<the program's check values>
// An OutOfMemoryError ends the round with "end oom" (the heap is too small).
// Before each round, outside the markers (neither timed nor counted), System.gc() leaves
// the heap with no garbage from the round before, as the C driver starts from an empty
// heap (DaCapo's harness does the same between iterations).
import java.io.BufferedReader;
import java.io.InputStreamReader;

public final class Harness {
    public static void main(String[] args) throws Exception {
        String program = args[0];
        int depth = args.length > 1 ? Integer.parseInt(args[1]) : 0;
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in));
        while (in.readLine() != null) {
            System.gc();
            System.out.println("begin");
            System.out.flush();
            String line;
            try {
                long start = System.nanoTime();
                String checks;
                long total;
                if (program.equals("gcbench")) {
                    GCBench.Result r = GCBench.round();
                    checks = r.checks;
                    total = r.totalNs;
                } else {
                    checks = BinaryTrees.round(depth);
                    total = System.nanoTime() - start;
                }
                line = "end total_ns=" + total + " checks=" + checks;
            } catch (OutOfMemoryError e) {
                line = "end oom";
            }
            System.out.println(line);
            System.out.flush();
        }
    }
}
