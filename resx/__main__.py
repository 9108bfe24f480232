from resx.cli import main

main()
