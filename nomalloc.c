#include <unistd.h>
int main(void){ for (int i=0;i<20;i++) usleep(100000); write(1,"done\n",5); return 0; }
