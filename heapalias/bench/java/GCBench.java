// Boehm's GCBench, written afresh from its published parameters, to time the
// JVM on the same machine as heapalias's C driver. Harness.java runs its rounds;
// a round's checks are "<stretch> <per-depth nodes...> <long-lived> <array ok>".
public final class GCBench {
    static final int STRETCH = 18, LONG_LIVED = 16, ARRAY = 500000, MIN_DEPTH = 4, MAX_DEPTH = 16;

    static final class Node {
        Node left, right;
        int i, j;
        Node(Node l, Node r) { left = l; right = r; }
        Node() { }
    }

    static long allocated;

    static int treeSize(int depth) { return (1 << (depth + 1)) - 1; }

    static void populate(int depth, Node node) {
        if (depth <= 0) return;
        depth--;
        node.left = new Node();
        node.right = new Node();
        allocated += 2;
        populate(depth, node.left);
        populate(depth, node.right);
    }

    static Node makeTree(int depth) {
        allocated++;
        if (depth <= 0) return new Node();
        return new Node(makeTree(depth - 1), makeTree(depth - 1));
    }

    static long countNodes(Node n) { return n == null ? 0 : 1 + countNodes(n.left) + countNodes(n.right); }

    static final class Result {
        final long totalNs;
        final String checks;
        Result(long totalNs, String checks) { this.totalNs = totalNs; this.checks = checks; }
    }

    /** One run; the clock stops before the long-lived tree is counted, as in the C driver. */
    static Result round() {
        StringBuilder checks = new StringBuilder();
        long start = System.nanoTime();
        allocated = 0;
        Node temp = makeTree(STRETCH);
        checks.append(allocated);
        temp = null;
        Node longLived = new Node();
        populate(LONG_LIVED, longLived);
        double[] array = new double[ARRAY];
        for (int i = 0; i < ARRAY / 2; i++) array[i] = 1.0 / i;
        for (int d = MIN_DEPTH; d <= MAX_DEPTH; d += 2) {
            int iterations = 2 * treeSize(STRETCH) / treeSize(d);
            long before = allocated;
            for (int i = 0; i < iterations; i++) {
                temp = new Node();
                allocated++;
                populate(d, temp);
                temp = null;
            }
            for (int i = 0; i < iterations; i++) {
                temp = makeTree(d);
                temp = null;
            }
            checks.append(' ').append(allocated - before);
        }
        long totalNs = System.nanoTime() - start;
        checks.append(' ').append(countNodes(longLived));
        checks.append(' ').append(array[1000] == 1.0 / 1000 ? 1 : 0);
        return new Result(totalNs, checks.toString());
    }
}
