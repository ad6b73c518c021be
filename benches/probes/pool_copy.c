// Where a 16 MiB copy into the pooled large-buffer area loses its speed:
// memcpy of SIZE bytes from one heap source into (a) a reused heap buffer
// (what the harness's memcpy baseline does), (b) one reused memfd mapping,
// (c) N memfd mappings in turn (as many as a pool keeps in flight), (e) fresh
// memfd pages (faulted by the copy, or MAP_POPULATEd first), (f) pages
// dropped before each copy (MADV_REMOVE, MADV_DONTNEED), (d) a mapping the
// other process has just read or written, (g) with the other core spinning.
// Findings and figures: docs/performance.md, "Large messages and loans".
//
//   gcc -O2 -o /tmp/pool_copy benches/probes/pool_copy.c && /tmp/pool_copy
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <time.h>
#include <sys/wait.h>
#include <stdatomic.h>
#include <sched.h>

static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec*1e9+t.tv_nsec;}
static int cmp(const void*a,const void*b){double x=*(double*)a,y=*(double*)b;return x<y?-1:x>y;}
#define SIZE (16u<<20)
#define REPS 60
static char *memfd_map(size_t n){int fd=memfd_create("p",0);ftruncate(fd,n);char*p=mmap(0,n,PROT_READ|PROT_WRITE,MAP_SHARED,fd,0);close(fd);return p;}
static void report(const char*name,double*v,int n){qsort(v,n,sizeof(double),cmp);double m=v[n/2];printf("%-58s median %7.3f ms  %6.2f GB/s  p90 %7.3f ms\n",name,m/1e6,SIZE/m,v[n*9/10]/1e6);}
static void rot(const char*name,char*src,char**dst,int n){double v[REPS];for(int i=0;i<REPS+5;i++){char*d=dst[i%n];double t=now();memcpy(d,src,SIZE);__asm__ volatile(""::"r"(d):"memory");if(i>=5)v[i-5]=now()-t;}report(name,v,REPS);}
int main(int argc,char**argv){
  char*src=malloc(SIZE);memset(src,0x5a,SIZE);
  char*heap=malloc(SIZE);memset(heap,0,SIZE);
  char*hd[1]={heap};rot("(a) heap dst reused (= harness memcpy)",src,hd,1);
  char*m[8];for(int i=0;i<8;i++){m[i]=memfd_map(SIZE);memset(m[i],0,SIZE);}
  rot("(b) one memfd mapping reused",src,m,1);
  char name[80];
  for(int n=2;n<=8;n*=2){snprintf(name,80,"(c) %d rotating memfd mappings",n);rot(name,src,m,n);}
  // (e) fresh pages every time: new memfd, not faulted
  {double v[20];for(int i=0;i<20;i++){char*d=memfd_map(SIZE);double t=now();memcpy(d,src,SIZE);v[i]=now()-t;munmap(d,SIZE);}report("(e) fresh memfd, faulted by the copy",v,20);}
  {double v[20];for(int i=0;i<20;i++){int fd=memfd_create("p",0);ftruncate(fd,SIZE);char*d=mmap(0,SIZE,PROT_READ|PROT_WRITE,MAP_SHARED|MAP_POPULATE,fd,0);close(fd);double t=now();memcpy(d,src,SIZE);v[i]=now()-t;munmap(d,SIZE);}report("(e) fresh memfd, MAP_POPULATE before the copy",v,20);}
  // (f) MADV_REMOVE (punch) after each use then reuse
  {double v[20];char*d=m[0];for(int i=0;i<20;i++){madvise(d,SIZE,MADV_REMOVE);double t=now();memcpy(d,src,SIZE);v[i]=now()-t;}report("(f) memfd punched (MADV_REMOVE) before each copy",v,20);}
  {double v[20];char*d=m[0];for(int i=0;i<20;i++){madvise(d,SIZE,MADV_DONTNEED);double t=now();memcpy(d,src,SIZE);v[i]=now()-t;}report("(f) memfd MADV_DONTNEED before each copy (pages kept)",v,20);}
  // (d) other process reads the buffer after each write
  {char*d=m[1];_Atomic int*flag=mmap(0,4096,PROT_READ|PROT_WRITE,MAP_SHARED|MAP_ANONYMOUS,-1,0);*flag=0;
   pid_t pid=fork();if(pid==0){volatile long s=0;for(;;){int f;while((f=atomic_load(flag))!=1){if(f==3)_exit(0);}for(size_t k=0;k<SIZE;k+=64)s+=d[k];atomic_store(flag,0);}}
   double v[REPS];for(int i=0;i<REPS+5;i++){while(atomic_load(flag)!=0);double t=now();memcpy(d,src,SIZE);double e=now()-t;atomic_store(flag,1);if(i>=5)v[i-5]=e;}
   while(atomic_load(flag)!=0);atomic_store(flag,3);waitpid(pid,0,0);report("(d) one memfd, other process reads it after each copy",v,REPS);
   // (d2) other process writes it (owns lines modified)
   *flag=0;pid=fork();if(pid==0){for(;;){int f;while((f=atomic_load(flag))!=1){if(f==3)_exit(0);}for(size_t k=0;k<SIZE;k+=64)d[k]=1;atomic_store(flag,0);}}
   for(int i=0;i<REPS+5;i++){while(atomic_load(flag)!=0);double t=now();memcpy(d,src,SIZE);double e=now()-t;atomic_store(flag,1);if(i>=5)v[i-5]=e;}
   while(atomic_load(flag)!=0);atomic_store(flag,3);waitpid(pid,0,0);report("(d) one memfd, other process writes a byte per line after",v,REPS);
   // (d3) other process idle spinning (busy core) while we rotate 4
   *flag=0;pid=fork();if(pid==0){while(atomic_load(flag)!=3);_exit(0);}
   rot("(g) 4 rotating memfd, other core spinning on a flag",src,m,4);
   rot("(g) 1 memfd, other core spinning on a flag",src,m,1);
   atomic_store(flag,3);waitpid(pid,0,0);}
  return 0;}
