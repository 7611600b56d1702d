/* oob_input: reads the input into a range beyond linear memory; the call must trap. */
#include "faasm.h"

int main(void) {
    return __faasm_read_input((void *)0xfffff000, 100);
}
