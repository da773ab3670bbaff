// The Benchmarks Game's binary-trees, single-threaded, written afresh from its published
// rules, to time the JVM on the same machine as heapalias's C driver (cext/drivers.c):
// a stretch tree of depth max+1, a long-lived tree of depth max, then for each depth
// d = 4, 6, ..., max, 2^(max-d+4) trees built bottom-up and counted.
public final class BinaryTrees {
    static final int MIN_DEPTH = 4;

    static final class Node {
        final Node left, right;
        Node(Node l, Node r) { left = l; right = r; }
        int check() { return left == null ? 1 : 1 + left.check() + right.check(); }
    }

    static Node bottomUp(int depth) {
        return depth > 0 ? new Node(bottomUp(depth - 1), bottomUp(depth - 1)) : new Node(null, null);
    }

    /** One run of the program: its check values, as the C driver records them. */
    static String round(int maxDepth) {
        int depth = Math.max(MIN_DEPTH + 2, maxDepth);
        StringBuilder checks = new StringBuilder();
        checks.append(bottomUp(depth + 1).check());
        Node longLived = bottomUp(depth);
        for (int d = MIN_DEPTH; d <= depth; d += 2) {
            int iterations = 1 << (depth - d + MIN_DEPTH);
            long check = 0;
            for (int i = 0; i < iterations; i++) check += bottomUp(d).check();
            checks.append(' ').append(check);
        }
        checks.append(' ').append(longLived.check());
        return checks.toString();
    }
}
