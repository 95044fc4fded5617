// Hello.java: prints a greeting and the first ten Fibonacci numbers. Reads no input.
public class Hello {
    public static void main(String[] args) {
        System.out.println("hello from java");
        StringBuilder sb = new StringBuilder("first 10 fibonacci:");
        long a = 0, b = 1;
        for (int i = 0; i < 10; i++) {
            sb.append(' ').append(a);
            long c = a + b;
            a = b;
            b = c;
        }
        System.out.println(sb);
    }
}
