from myhibachi.cli import main

main()
