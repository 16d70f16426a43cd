#include <stdio.h>
int main(void){puts("spinenet");return 0;}
