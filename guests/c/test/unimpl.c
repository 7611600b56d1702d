/* unimpl: calls env.socket, an import Faasm defines but ferry does not implement; it must trap. */
__attribute__((import_module("env"), import_name("socket"))) int env_socket(int domain, int type, int protocol);

int main(void) {
    return env_socket(2, 1, 0);
}
